"""U-Boot environment and fw_env.config against the real fw_printenv/fw_setenv (Debian libubootenv-tool 0.3.2)."""

from __future__ import annotations

import struct
import subprocess
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bsp.bootctl import make_backend, ubootenv
from bsp.bootctl.errors import BootControlError
from bsp.bootctl.uboot import load, store
from bsp.bootctl.ubootenv import EnvLocation, UBootEnvError
from tests.conftest import require_tool, run

SIZE = 0x4000
NAMES = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.", min_size=1, max_size=16)
VALUES = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\0\n"), min_size=1, max_size=60)


def printenv(config: Path) -> dict[str, str]:
    proc = run(require_tool("fw_printenv"), "-c", str(config))
    out = {}
    for line in proc.stdout.split("\n"):
        if not line:
            continue
        name, _, value = line.partition("=")
        out[name] = value
    return out


def setenv(config: Path, *args: str, default: Path | None = None) -> None:
    cmd = [require_tool("fw_setenv"), "-c", str(config)]
    if default is not None:
        cmd += ["-f", str(default)]
    run(*cmd, *args)


@pytest.fixture
def redundant(tmp_path):
    """A redundant environment: two copies in one 'device' file, like two offsets on an eMMC."""
    dev = tmp_path / "mmcblk0"
    dev.write_bytes(b"\xff" * 3 * SIZE)
    config = tmp_path / "fw_env.config"
    config.write_text(f"# device offset size\n{dev} 0x{SIZE:x} 0x{SIZE:x}\n{dev} 0x{2 * SIZE:x} {SIZE:x}\n")
    return dev, config


@pytest.fixture
def single(tmp_path):
    dev = tmp_path / "uboot.env"
    dev.write_bytes(b"\0" * SIZE)
    config = tmp_path / "fw_env.config"
    config.write_text(f"{dev} 0 0x{SIZE:x}\n")
    return dev, config


def copy_bytes(dev: Path, index: int) -> bytes:
    return dev.read_bytes()[(index + 1) * SIZE:(index + 2) * SIZE]


# --- fw_env.config ---------------------------------------------------------------------------

def test_config_parsing():
    text = ("# comment\n"
            "\n"
            "   \n"
            "/dev/mmcblk0 0xc0000 0x20000\n"
            "/dev/mmcblk0 -0x4000 20000 0x200 1\n"
            "/dev/ignored 0 0x20000\n")
    assert ubootenv.parse_fw_env_config(text) == [
        EnvLocation("/dev/mmcblk0", 0xC0000, 0x20000),
        EnvLocation("/dev/mmcblk0", -0x4000, 0x20000, 0x200, 1),
    ]
    assert ubootenv.parse_fw_env_config("/boot/uboot.env 010 4000\n")[0].offset == 8  # C octal, like %lli


@pytest.mark.parametrize("text, message", [
    ("", "no environment location"),
    ("/dev/x 0 0\n", "size is 0"),
    ("/dev/x zero 0x4000\n", "offset"),
    ("/dev/x 0 0x4000g\n", "size"),
    ("/dev/x 0 0x4000\n/dev/x 0x4000 0x8000\n", "different sizes"),
    ("/dev/mtd1 0 0x4000\n", "MTD"),
])
def test_config_errors(text, message):
    with pytest.raises(UBootEnvError, match=message):
        ubootenv.parse_fw_env_config(text, "cfg")


@settings(max_examples=300)
@given(text=st.text(max_size=300))
def test_config_parser_never_crashes(text):
    try:
        locations = ubootenv.parse_fw_env_config(text)
    except UBootEnvError:
        return
    assert 1 <= len(locations) <= 2


# --- our writes read by fw_printenv ------------------------------------------------------------

def test_fw_printenv_reads_our_single_copy(single):
    dev, config = single
    variables = {"bootcmd": "run edge", "BOOT_ORDER": "B A", "BOOT_A_LEFT": "3", "x": "a=b c"}
    dev.write_bytes(ubootenv.render_copy(variables, SIZE, None))
    assert printenv(config) == variables


def test_fw_printenv_reads_our_redundant_writes(redundant):
    dev, config = redundant
    backend = make_backend("uboot", {"fw_env_config": str(config), "cmdline": "/dev/null", "lockfile": None,
                                     "default_env": None})
    with open(dev, "r+b") as fh:  # a first valid copy, as flashed at the factory
        fh.seek(SIZE)
        fh.write(ubootenv.render_copy({"bootcmd": "boot", "BOOT_ORDER": "A B", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "3"}, SIZE, 7))
    backend.set_primary("B", 4)
    assert copy_bytes(dev, 1)[4] == 8  # written to the other copy, flags one higher
    assert printenv(config) == {"bootcmd": "boot", "BOOT_ORDER": "B A", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "4",
                                "EDGE_TRIAL": "B"}
    backend.mark_good("B")
    assert copy_bytes(dev, 0)[4] == 9
    assert printenv(config)["BOOT_B_LEFT"] == "3" and "EDGE_TRIAL" not in printenv(config)


# --- fw_setenv writes read by us -------------------------------------------------------------

def test_fw_setenv_single_copy_read_by_us(single, tmp_path):
    dev, config = single
    setenv(config, "BOOT_ORDER", "A B", default=Path("/dev/null"))
    setenv(config, "BOOT_A_LEFT", "2")
    env = load(config)
    assert env.current == 0 and env.variables == {"BOOT_ORDER": "A B", "BOOT_A_LEFT": "2"}


def test_fw_setenv_redundant_read_by_us_and_data_identical(redundant):
    dev, config = redundant
    setenv(config, "a", "1", default=Path("/dev/null"))
    for i in range(5):  # walk the flags counter through several writes
        setenv(config, "BOOT_ORDER", "B A" if i % 2 else "A B", "BOOT_B_LEFT", str(i))
    env = load(config)
    want = {"a": "1", "BOOT_ORDER": "A B", "BOOT_B_LEFT": "4"}
    assert env.variables == want
    raw = copy_bytes(dev, env.current)
    # Our encoding of the same variables equals libubootenv's up to its terminator (its padding is malloc garbage).
    ours = ubootenv.encode_data(want, SIZE - 5)
    used = ours.index(b"\0\0") + 2
    assert raw[5:5 + used] == ours[:used]
    assert raw[:4] == struct.pack("<I", zlib.crc32(raw[5:]))


def test_mixed_writers_alternate_copies(redundant):
    """fw_setenv and the backend take turns; each sees the other's last write."""
    dev, config = redundant
    setenv(config, "BOOT_ORDER", "A B", "BOOT_A_LEFT", "3", "BOOT_B_LEFT", "3", default=Path("/dev/null"))
    backend = make_backend("uboot", {"fw_env_config": str(config), "cmdline": "/dev/null", "lockfile": None})
    for i in range(6):
        if i % 2:
            setenv(config, "BOOT_A_LEFT", str(i))
            assert backend.attempts_left("A") == i
        else:
            backend.set_primary("A", i + 1)
            assert printenv(config)["BOOT_A_LEFT"] == str(i + 1)


# --- torn writes -------------------------------------------------------------------------------

@pytest.mark.parametrize("torn", ["first-sector", "crc-only", "half"])
def test_torn_write_of_one_copy_both_tools_read_the_other(redundant, torn):
    dev, config = redundant
    setenv(config, "BOOT_ORDER", "A B", "BOOT_A_LEFT", "3", default=Path("/dev/null"))
    good_env = load(config)
    backend = make_backend("uboot", {"fw_env_config": str(config), "cmdline": "/dev/null", "lockfile": None})
    backend.set_primary("B", 3)
    new_current = load(config).current
    assert new_current != good_env.current
    # Tear the write that just happened: keep only part of the new copy, the rest is what was there before.
    data = bytearray(dev.read_bytes())
    start = (new_current + 1) * SIZE
    cut = {"first-sector": 512, "crc-only": 4, "half": SIZE // 2}[torn]
    data[start + cut:start + SIZE] = b"\xff" * (SIZE - cut)
    dev.write_bytes(bytes(data))
    assert printenv(config) == {"BOOT_ORDER": "A B", "BOOT_A_LEFT": "3"}
    env = load(config)
    assert env.current == good_env.current and env.variables == {"BOOT_ORDER": "A B", "BOOT_A_LEFT": "3"}
    # The next write by either tool goes to the torn copy and repairs it.
    backend.set_primary("B", 3)
    assert printenv(config)["BOOT_ORDER"] == "B A"


def test_corrupt_crc_of_current_copy(redundant):
    dev, config = redundant
    setenv(config, "v", "old", default=Path("/dev/null"))
    setenv(config, "v", "new")
    env = load(config)
    data = bytearray(dev.read_bytes())
    data[(env.current + 1) * SIZE + 100] ^= 0x01  # a flipped bit in the data of the newest copy
    dev.write_bytes(bytes(data))
    assert printenv(config) == {"v": "old"}
    assert load(config).variables == {"v": "old"}


@pytest.mark.parametrize("flags, expect", [((0xFF, 0x00), 1), ((0x00, 0xFF), 0), ((5, 4), 0), ((4, 5), 1), ((3, 3), 0)])
def test_current_copy_selection_matches_fw_printenv(redundant, flags, expect):
    dev, config = redundant
    data = bytearray(dev.read_bytes())
    for i, f in enumerate(flags):
        data[(i + 1) * SIZE:(i + 2) * SIZE] = ubootenv.render_copy({"copy": str(i)}, SIZE, f)
    dev.write_bytes(bytes(data))
    assert printenv(config) == {"copy": str(expect)}
    assert load(config).current == expect


def test_no_valid_copy(redundant, tmp_path):
    dev, config = redundant
    with pytest.raises(BootControlError, match="no U-Boot environment copy has a valid CRC"):
        load(config)
    default = tmp_path / "u-boot-initial-env"
    default.write_text("# default env\nbootcmd=run distro\nempty=\n")
    env = load(config, default)
    assert env.current is None and env.variables == {"bootcmd": "run distro"}
    store(env, {**env.variables, "BOOT_ORDER": "A B"})
    assert printenv(config) == {"bootcmd": "run distro", "BOOT_ORDER": "A B"}


def test_negative_offset_counts_from_the_end(tmp_path):
    dev = tmp_path / "disk"
    dev.write_bytes(b"\0" * 4 * SIZE)
    config = tmp_path / "fw_env.config"
    config.write_text(f"{dev} -0x{SIZE:x} 0x{SIZE:x}\n")
    backend = make_backend("uboot", {"fw_env_config": str(config), "cmdline": "/dev/null", "lockfile": None,
                                     "default_env": "/dev/null"})
    backend.mark_good("A")
    raw = dev.read_bytes()
    assert raw[:3 * SIZE] == b"\0" * 3 * SIZE
    assert ubootenv.parse_copy(raw[3 * SIZE:], False).variables == {"BOOT_ORDER": "A B", "BOOT_A_LEFT": "3"}


def test_too_large_environment_is_refused(single):
    dev, config = single
    dev.write_bytes(ubootenv.render_copy({"big": "x" * (SIZE - 20)}, SIZE, None))
    backend = make_backend("uboot", {"fw_env_config": str(config), "cmdline": "/dev/null", "lockfile": None})
    before = dev.read_bytes()
    with pytest.raises(UBootEnvError, match="area holds"):
        backend.set_primary("B", 3)
    assert dev.read_bytes() == before


# --- format properties -------------------------------------------------------------------------

@settings(max_examples=200)
@given(variables=st.dictionaries(NAMES, VALUES, max_size=20), flags=st.one_of(st.none(), st.integers(0, 255)))
def test_render_parse_round_trip(variables, flags):
    raw = ubootenv.render_copy(variables, 2048, flags)
    copy = ubootenv.parse_copy(raw, flags is not None)
    assert copy.crc_ok and copy.variables == variables and copy.flags == flags


@settings(max_examples=300)
@given(data=st.binary(min_size=6, max_size=600), redundant_layout=st.booleans())
def test_hostile_copies(data, redundant_layout):
    """Random bytes with a correct CRC: parsed or a typed error, never anything else."""
    header = 5 if redundant_layout else 4
    raw = struct.pack("<I", zlib.crc32(data[header:])) + data[4:]
    try:
        copy = ubootenv.parse_copy(raw, redundant_layout)
    except UBootEnvError:
        return
    assert copy.crc_ok


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(variables=st.dictionaries(NAMES.filter(lambda n: not n.startswith(".")), VALUES, min_size=1, max_size=8))
def test_random_environments_read_by_fw_printenv(single, variables):
    dev, config = single
    dev.write_bytes(ubootenv.render_copy(variables, SIZE, None))
    proc = subprocess.run([require_tool("fw_printenv"), "-c", str(config)], capture_output=True)
    got = {}
    for line in proc.stdout.decode("utf-8", "surrogateescape").split("\n"):
        if not line:
            continue
        name, _, value = line.partition("=")
        got[name] = value
    assert got == variables
