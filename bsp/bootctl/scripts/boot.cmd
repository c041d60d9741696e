# Edge A/B boot for U-Boot: slot selection with attempt counting (U-Boot boot-count pattern).
# Compile: mkimage -A arm64 -O linux -T script -C none -d boot.cmd boot.scr
#
# The algorithm is the one in bsp/bootctl/counting.py (docs/boot-control.md):
#   1. BOOT_ORDER, normalised: the words A and B in order, no repeats; "A B" if none.
#   2. The first slot whose BOOT_x_LEFT is a digit 1..9 is booted, after its
#      counter is decremented and the environment saved.  Any other value counts as 0.
#   3. If no slot in the order has attempts left, every slot in the order gets 3
#      again and the first one is booted (its counter decremented and saved).
# The OS (edge, bsp/bootctl/uboot.py, or fw_setenv) writes BOOT_ORDER, the
# counters and EDGE_TRIAL; this script changes only the counters.  The decrement
# is an if/elif chain, so the script needs no setexpr.
#
# Board glue, read from the environment:
#   edge_boot       if set, "run edge_boot" boots the slot (it sees edge_slot and bootargs);
#                   otherwise the script loads ${edge_kernel} (default /boot/Image) from
#                   ${edge_devtype} ${edge_devnum}:${edge_part_A|B} (default mmc 0:2 / 0:3)
#                   and runs booti with U-Boot's own device tree.
#   edge_root_A/B   root= for each slot (default /dev/mmcblk0p2 and /dev/mmcblk0p3)
#   edge_bootargs   extra kernel parameters
# tests/bootctl/test_uboot_script.py runs this script in real U-Boot (QEMU).

# 1. Normalise the order.
edge_order=""
edge_has_A=""
edge_has_B=""
for edge_w in ${BOOT_ORDER}; do
  if test "${edge_w}" = "A"; then
    if test -z "${edge_has_A}"; then edge_has_A=1; edge_order="${edge_order} A"; fi
  elif test "${edge_w}" = "B"; then
    if test -z "${edge_has_B}"; then edge_has_B=1; edge_order="${edge_order} B"; fi
  fi
done
if test -z "${edge_order}"; then edge_order="A B"; fi

# 2. The first slot with attempts left.
edge_sel=""
for edge_s in ${edge_order}; do
  if test -z "${edge_sel}"; then
    if test "${edge_s}" = "A"; then edge_cur="${BOOT_A_LEFT}"; else edge_cur="${BOOT_B_LEFT}"; fi
    edge_left=""
    if test "${edge_cur}" = "1"; then edge_left=0
    elif test "${edge_cur}" = "2"; then edge_left=1
    elif test "${edge_cur}" = "3"; then edge_left=2
    elif test "${edge_cur}" = "4"; then edge_left=3
    elif test "${edge_cur}" = "5"; then edge_left=4
    elif test "${edge_cur}" = "6"; then edge_left=5
    elif test "${edge_cur}" = "7"; then edge_left=6
    elif test "${edge_cur}" = "8"; then edge_left=7
    elif test "${edge_cur}" = "9"; then edge_left=8
    fi
    if test -n "${edge_left}"; then
      edge_sel="${edge_s}"
      setenv BOOT_${edge_s}_LEFT ${edge_left}
    fi
  fi
done

# 3. None left: a full budget for every slot in the order, boot the first.
if test -z "${edge_sel}"; then
  echo "edge: no slot has attempts left; resetting the counters"
  for edge_s in ${edge_order}; do
    if test -z "${edge_sel}"; then
      edge_sel="${edge_s}"
      setenv BOOT_${edge_s}_LEFT 2
    else
      setenv BOOT_${edge_s}_LEFT 3
    fi
  done
fi

# Save before booting: a crash from here on has used up this attempt.
saveenv

# Board defaults.
edge_dt="${edge_devtype}"
if test -z "${edge_dt}"; then edge_dt=mmc; fi
edge_dn="${edge_devnum}"
if test -z "${edge_dn}"; then edge_dn=0; fi
edge_k="${edge_kernel}"
if test -z "${edge_k}"; then edge_k=/boot/Image; fi
if test "${edge_sel}" = "A"; then
  edge_p="${edge_part_A}"
  if test -z "${edge_p}"; then edge_p=2; fi
  edge_r="${edge_root_A}"
  if test -z "${edge_r}"; then edge_r=/dev/mmcblk0p2; fi
else
  edge_p="${edge_part_B}"
  if test -z "${edge_p}"; then edge_p=3; fi
  edge_r="${edge_root_B}"
  if test -z "${edge_r}"; then edge_r=/dev/mmcblk0p3; fi
fi

setenv edge_slot ${edge_sel}
setenv bootargs "${edge_bootargs} root=${edge_r} edge.slot=${edge_sel}"
echo "edge: booting slot ${edge_sel}"
if test -n "${edge_boot}"; then
  run edge_boot
else
  load ${edge_dt} ${edge_dn}:${edge_p} ${kernel_addr_r} ${edge_k} && booti ${kernel_addr_r} - ${fdtcontroladdr}
fi

# Still here: the slot did not boot.  Reset; the next boot spends another attempt, then falls back.
echo "edge: slot ${edge_sel} did not boot; resetting"
reset
