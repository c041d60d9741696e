"""Shipping changed blocks ready-compressed when the device's CPU, not its link, sets the pace."""

from __future__ import annotations

import itertools
import json
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.delta import apply_delta, make_delta
from edge.delta.tradeoff import Candidate, choose, estimate
from tests.conftest import run_edge
from tests.delta.helpers import base_entries, edit, write

candidates = st.lists(st.builds(Candidate, st.integers(0, 10**6), st.integers(0, 10**6)), max_size=8)
speeds = st.floats(1e3, 1e8, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(candidates, st.integers(0, 10**7), speeds, speeds)
def test_choice_never_slower_and_close_to_the_best_subset(cands, size, link, rate):
    chosen, before, after = choose(cands, size, link, rate)
    assert before == estimate(size, sum(c.plain for c in cands), link, rate)
    # the estimate it reports is the estimate of the set it chose
    again = estimate(size + sum(cands[i].extra for i in chosen),
                     sum(c.plain for i, c in enumerate(cands) if i not in chosen), link, rate)
    assert after.seconds == pytest.approx(again.seconds)
    assert after.seconds <= before.seconds
    # against every subset: the greedy order is within one candidate's worth of the optimum
    best = min(max((size + sum(cands[i].extra for i in s)) / link,
                   sum(c.plain for i, c in enumerate(cands) if i not in s) / rate)
               for k in range(len(cands) + 1) for s in itertools.combinations(range(len(cands)), k))
    slack = max([max(c.extra / link, c.plain / rate) for c in cands], default=0.0)
    assert after.seconds <= best + slack + 1e-9


def test_a_slow_link_keeps_every_rebuild_and_a_fast_one_ships_the_cheap_ones():
    cands = [Candidate(plain=131072, extra=40000), Candidate(plain=131072, extra=120000)]
    assert choose(cands, 10_000, link_speed=1e3, rebuild_rate=1e7)[0] == set()
    # a link 10x faster than the CPU: the well-compressed block (40 KB for 128 KiB of work) goes first
    chosen, before, after = choose(cands, 10_000, link_speed=1e8, rebuild_rate=1e7)
    assert 0 in chosen and after.seconds < before.seconds


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
