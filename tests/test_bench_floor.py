"""The sequential-formula floor the delta benchmarks report (bench/bench_stream.py, bench/bench_rebuild.py)."""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from bench.bench_rebuild import RATE_HI, RATE_LO, rate_needed
from bench.bench_stream import OpCost, floor_seconds, reading

LINK = 1e6

ops = st.lists(
    st.one_of(
        st.builds(OpCost, st.integers(1, 10**6)),  # copy, literal, patch: only downloaded
        st.builds(OpCost, st.integers(1, 10**6), st.integers(1, 10**7), st.integers(1, 10**6)),  # blocks
    ),
    max_size=30,
)


def _every_choice(base: int, costs: list[OpCost], rate: float) -> float:
    """The formula for every subset of BLOCKS ops shipped, the smallest one (brute force)."""
    blocks = [i for i, c in enumerate(costs) if c.plain]
    best = float("inf")
    for mask in range(1 << len(blocks)):
        shipped = {blocks[j] for j in range(len(blocks)) if mask >> j & 1}
        total = base / LINK
        for i, c in enumerate(costs):
            total += c.shipped / LINK if i in shipped else c.size / LINK + c.plain / rate
        best = min(best, total)
    return best


@settings(max_examples=200, deadline=None)
@given(base=st.integers(0, 1000), costs=ops.filter(lambda cs: sum(1 for c in cs if c.plain) <= 8),
       rate=st.floats(1e5, 1e9))
def test_floor_is_the_best_choice_of_shipped_and_rebuilt_ops(base: int, costs: list[OpCost], rate: float) -> None:
    assert abs(floor_seconds(base, costs, LINK, rate) - _every_choice(base, costs, rate)) < 1e-6


def test_floor_ships_an_op_only_when_that_is_faster() -> None:
    slow = OpCost(size=100_000, plain=10_000_000, shipped=3_000_000)  # 0.1 s + 10 s rebuilt, 3 s shipped
    assert floor_seconds(0, [slow], LINK, 1e6) == 3.0
    assert floor_seconds(0, [slow], LINK, 1e8) == 0.1 + 0.1


@settings(max_examples=200, deadline=None)
@given(base=st.integers(0, 1000), costs=ops, budget=st.floats(0.01, 100))
def test_rate_needed_is_the_lowest_rate_that_fits(base: int, costs: list[OpCost], budget: float) -> None:
    rate = rate_needed(base, costs, LINK, budget)
    if rate is None:
        assert floor_seconds(base, costs, LINK, RATE_HI) > budget
        return
    assert floor_seconds(base, costs, LINK, rate) <= budget
    if rate > RATE_LO:
        assert floor_seconds(base, costs, LINK, rate * 0.999) > budget


def _run_rows(link: float, edge_s: float, x_s: float) -> list[dict]:
    return [{"flavour": "edge-zstd19", "link": link, "label": "Edge (smallest delta)", "bytes": 2_000_000,
             "seconds": edge_s, "ok": True, "shipped": None},
            {"flavour": "edge-zstd19", "link": link, "label": "Edge --link-speed 1M", "bytes": 4_000_000,
             "seconds": edge_s, "ok": True, "shipped": 40},
            {"flavour": "edge-zstd19", "link": link, "label": "xdelta3 -9 (curl | xdelta3 -d)", "bytes": 11_000_000,
             "seconds": x_s, "ok": True, "shipped": None}]


def test_the_reading_tabulates_this_runs_rebuild_rate_floor_and_download_bound() -> None:
    floors = {"edge-zstd19@1e+06": {"seconds": 6.0, "x_formula": 12.0, "rebuild_rate": 4.2e6,
                                    "rebuilt_plain": 43_500_000}}
    text = reading(["edge-zstd19", "mksquashfs-lz4"], _run_rows(1e6, 7.0, 12.0), floors)
    row = next(line for line in text.splitlines() if line.startswith("| edge-zstd19 "))
    threads = os.cpu_count() or 1
    # 43.5 MB rebuilt, 4.2 MB/s, per core, floor 6/12, and 2 MB at 1 MB/s against xdelta3's 12 s
    assert row == f"| edge-zstd19 | 43.5 | 4.2 | {4.2 / threads:.1f} | 0.500x | 0.167x |"
    assert "| mksquashfs-lz4 " not in text  # a flavour without rows in this run gets no row
