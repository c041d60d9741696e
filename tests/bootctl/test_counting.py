"""Properties of the shared attempt-counting algorithm (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bsp.bootctl import counting
from bsp.bootctl.errors import BootControlError

WORDS = st.sampled_from(["A", "B", "C", "", "a", "AB", "\t"])
VALUES = st.one_of(st.none(), st.sampled_from(["0", "1", "2", "5", "9", "10", "-1", "x", "", "03"]))
ENVS = st.builds(
    lambda order, a, b, trial: {k: v for k, v in {"BOOT_ORDER": order, "BOOT_A_LEFT": a, "BOOT_B_LEFT": b,
                                                   "EDGE_TRIAL": trial}.items() if v is not None},
    st.one_of(st.none(), st.lists(WORDS, max_size=5).map(" ".join)), VALUES, VALUES,
    st.one_of(st.none(), st.sampled_from(["A", "B", "C"])),
)


@settings(max_examples=500)
@given(env=ENVS)
def test_bootloader_always_boots_a_slot_of_the_order(env):
    step = counting.bootloader_step(env)
    order = counting.normalize_order(env.get("BOOT_ORDER"))
    assert step.slot in order
    assert set(step.updates) <= {counting.left_var(s) for s in order}
    after = counting.apply_updates(env, step.updates)
    assert counting.parse_left(after[counting.left_var(step.slot)]) == \
        (counting.parse_left(env.get(counting.left_var(step.slot))) - 1 if not step.counters_reset else 2)


@settings(max_examples=300)
@given(env=ENVS, bad=st.sampled_from(["A", "B"]))
def test_a_slot_that_never_confirms_is_left_within_its_attempts(env, bad):
    """Whatever the state, if slot `bad` crashes on every boot and the other slot is in the order,
    the bootloader reaches the other slot within 13 boots: at most 9 attempts, then (if the other slot had
    none left either) the reset round gives the first slot 3 more, then the other slot boots."""
    good = "A" if bad == "B" else "B"
    if good not in counting.normalize_order(env.get("BOOT_ORDER")):
        return
    for _ in range(13):
        step = counting.bootloader_step(env)
        if step.slot == good:
            return
        env = counting.apply_updates(env, step.updates)
    pytest.fail(f"never reached {good}")


def test_set_primary_then_fallback_sequence():
    env = counting.initial_env(3)
    env = counting.apply_updates(env, counting.set_primary(env, "B", 2))
    assert env == {"BOOT_ORDER": "B A", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "2", "EDGE_TRIAL": "B"}
    seen = []
    for _ in range(4):
        step = counting.bootloader_step(env)
        seen.append(step.slot)
        env = counting.apply_updates(env, step.updates)
    assert seen == ["B", "B", "A", "A"]
    view = counting.CountingView.from_env(env)
    assert view.state("B") == "bad" and view.state("A") == "good" and view.primary == "B"


def test_states_and_operations():
    env = counting.initial_env(3)
    view = counting.CountingView.from_env(env)
    assert (view.primary, view.state("A"), view.state("B")) == ("A", "good", "good")
    env = counting.apply_updates(env, counting.set_primary(env, "B", 3))
    assert counting.CountingView.from_env(env).state("B") == "trying"
    env = counting.apply_updates(env, counting.mark_good(env, "B", 3))
    assert "EDGE_TRIAL" not in env and counting.CountingView.from_env(env).state("B") == "good"
    env = counting.apply_updates(env, counting.mark_bad(env, "A"))
    assert env["BOOT_ORDER"] == "B" and counting.CountingView.from_env(env).state("A") == "bad"
    with pytest.raises(BootControlError, match="only slot"):
        counting.mark_bad(env, "B")
    env = counting.apply_updates(env, counting.mark_good(env, "A", 3))
    assert env["BOOT_ORDER"] == "B A"  # re-added at the end, primary unchanged


def test_all_exhausted_slots_are_not_reported_bad():
    env = {"BOOT_ORDER": "A B", "BOOT_A_LEFT": "0", "BOOT_B_LEFT": "0"}
    view = counting.CountingView.from_env(env)
    assert view.state("A") == "good" and view.state("B") == "good"  # the next boot resets both


@pytest.mark.parametrize("attempts", [0, 10, -1, True, "3"])
def test_attempts_range(attempts):
    with pytest.raises(BootControlError, match="attempts"):
        counting.set_primary(counting.initial_env(), "B", attempts)


def test_unknown_slot():
    with pytest.raises(BootControlError, match="unknown slot"):
        counting.set_primary({}, "C", 3)
