"""Shipping changed blocks ready-compressed when the device's CPU, not its link, sets the pace."""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.delta import apply_delta, make_delta
from edge.delta.tradeoff import Item, choose, simulate
from tests.conftest import run_edge
from tests.delta.helpers import base_entries, edit, write

items = st.lists(st.one_of(st.builds(Item, st.integers(0, 10**6)),  # copies, literals: bytes only
                           st.builds(Item, st.integers(1, 10**5), st.integers(1, 10**6), st.integers(1, 10**6))),
                 max_size=7)
speeds = st.floats(1e3, 1e8, allow_nan=False)


def reference(items: list[Item], shipped: set[int], link: float, rate: float) -> float:
    """The pipeline spelled out as event times: op i arrives when every byte before it has; its rebuild
    starts when it has arrived and the rebuild of the op before it is done."""
    sizes = [it.shipped_size if i in shipped and it.plain else it.size for i, it in enumerate(items)]
    arrive = [sum(sizes[: i + 1]) / link for i in range(len(items))]
    done = 0.0
    for i, it in enumerate(items):
        if it.plain and i not in shipped:
            done = max(done, arrive[i]) + it.plain / rate
    return max([done] + arrive)


@settings(max_examples=300, deadline=None)
@given(items, speeds, speeds, st.data())
def test_simulation_matches_the_event_times(its, link, rate, data):
    shipped = set(data.draw(st.lists(st.integers(0, max(len(its) - 1, 0)), max_size=len(its))) if its else [])
    assert simulate(its, shipped, link, rate) == pytest.approx(reference(its, shipped, link, rate))


@settings(max_examples=300, deadline=None)
@given(items, speeds, speeds)
def test_choice_is_never_slower_and_reports_what_it_chose(its, link, rate):
    chosen, before, after = choose(its, link, rate)
    assert before == pytest.approx(reference(its, set(), link, rate))
    assert after == pytest.approx(reference(its, chosen, link, rate))
    assert after <= before + 1e-12
    assert all(its[i].plain > 0 for i in chosen)
    # no single further op shipped, or single chosen op taken back, would make it finish sooner
    for i, it in enumerate(its):
        if it.plain:
            assert reference(its, chosen ^ {i}, link, rate) >= after - 1e-9 * max(after, 1)


def test_a_slow_link_keeps_every_rebuild_and_a_fast_one_ships_the_cheap_ones():
    its = [Item(10_000), Item(2_000, 131072, 40000), Item(2_000, 131072, 120000)]
    assert choose(its, link_speed=1e3, rebuild_rate=1e7)[0] == set()
    # a link 10x faster than the CPU: the well-compressed block (40 KB for 128 KiB of work) goes first
    chosen, before, after = choose(its, link_speed=1e8, rebuild_rate=1e7)
    assert 1 in chosen and after < before


def _pair(tmp_path, seed: int = 11):
    old = write(base_entries(seed), str(tmp_path / "old.sqfs"), compressor="zstd", level=19)
    new = write(edit(base_entries(seed), seed), str(tmp_path / "new.sqfs"), compressor="zstd", level=19)
    return old, new


@pytest.mark.parametrize("link,shipped", [(1.0, "none"), (1e12, "all")])
def test_link_speed_extremes(tmp_path, link, shipped):
    old, new = _pair(tmp_path)
    plain = make_delta(old, new, str(tmp_path / "plain.delta"))
    delta = str(tmp_path / "d.delta")
    result = make_delta(old, new, delta, link_speed=link, rebuild_rate=1e6)
    assert plain.ops.get("blocks", 0) > 0
    if shipped == "none":  # a 1 B/s link: every changed block is rebuilt, the delta is the smallest one
        assert result.shipped_ops == 0 and result.size == plain.size
    else:  # a free link: nothing is left to recompress on the device
        assert result.shipped_ops > 0 and "blocks" not in result.ops and result.size > plain.size
        assert result.estimated_seconds["after"] < result.estimated_seconds["before"]
    out = str(tmp_path / "out.img")
    applied = apply_delta(old, delta, out)
    assert open(out, "rb").read() == open(new, "rb").read()
    assert (applied.rebuilt_bytes == 0) == (shipped == "all")


def test_cli_link_speed_and_rebuild_rate_report(tmp_path):
    old, new = _pair(tmp_path, 12)
    delta = str(tmp_path / "d.delta")
    made = json.loads(run_edge("delta", "make", old, new, "-o", delta, "--link-speed", "1G",
                               "--rebuild-rate", "1M", "--json").stdout)
    assert made["shipped_ops"] > 0 and made["rebuild_rate"] == 1e6
    out = str(tmp_path / "out.img")
    applied = json.loads(run_edge("delta", "apply", old, delta, "-o", out, "--json").stdout)
    assert open(out, "rb").read() == open(new, "rb").read()
    # the rate a device reports is what --rebuild-rate takes (a full rebuild here, to measure it)
    full = str(tmp_path / "full.delta")
    run_edge("delta", "make", old, new, "-o", full)
    os.unlink(out)
    rebuilt = json.loads(run_edge("delta", "apply", old, full, "-o", out, "--json").stdout)
    assert rebuilt["rebuilt_bytes"] > applied["rebuilt_bytes"] and rebuilt["rebuild_rate"] > 0


@pytest.mark.parametrize("argv,message", [
    (["--link-speed", "fast"], "is not a rate"),
    (["--link-speed", "0"], "positive"),
    (["--rebuild-rate", "1M"], "only matters with --link-speed"),
])
def test_cli_rejects_bad_rates(tmp_path, argv, message):
    old, new = _pair(tmp_path, 13)
    res = run_edge("delta", "make", old, new, "-o", str(tmp_path / "d.delta"), *argv, check=False)
    assert res.returncode != 0 and message in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "d.delta").exists()
