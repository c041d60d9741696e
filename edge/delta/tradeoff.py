"""Ship a changed block ready-compressed, or rebuild it on the device? (pure)

A BLOCKS op is the smallest way to send a changed file, but the device pays for
it in CPU: every block is recompressed with the image's compressor, and at zstd
level 19 that runs at a few MB/s per core.  Sending the op's stored (compressed)
bytes instead costs more download and no CPU.  Which is faster depends on the
device's link and CPU, so the generator only makes this trade when told the link
speed.

The device applies a delta while it downloads (``edge install URL`` and
``edge delta apply OLD URL`` stream with Range requests), so ``simulate`` models
that pipeline: ops arrive one after another at the link speed, and each op's
recompression starts once the op has arrived and the previous recompression is
done (all cores together rebuild at ``rebuild_rate``).  The install is done when
the last byte has arrived and the last block is rebuilt.  ``choose`` tries the
ops that buy the most rebuild time per extra byte first, and ships each one that
makes the simulated install finish sooner, then goes over them again (shipping
or taking back) until no single change helps.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

WORK = 20_000_000  # simulated op steps ``choose`` may spend (about 10 s of Python at worst)


@dataclass(frozen=True, slots=True)
class Item:
    """One op in stream order: its delta bytes, the plain bytes the device recompresses for it (0: none),
    and its delta bytes if shipped ready-compressed instead (only meaningful when ``plain`` > 0)."""

    size: int
    plain: int = 0
    shipped_size: int = 0


def simulate(items: Sequence[Item], shipped: Iterable[int], link_speed: float, rebuild_rate: float) -> float:
    """Seconds until the last op has arrived and been rebuilt, shipping the ops whose indexes are in ``shipped``."""
    if link_speed <= 0 or rebuild_rate <= 0:
        raise ValueError("link speed and rebuild rate must be positive")
    ship = set(shipped)
    arrived = rebuilt = 0.0
    for i, it in enumerate(items):
        if i in ship and it.plain > 0:
            arrived += it.shipped_size / link_speed
        else:
            arrived += it.size / link_speed
            if it.plain > 0:
                rebuilt = max(rebuilt, arrived) + it.plain / rebuild_rate
    return max(arrived, rebuilt)


def choose(items: Sequence[Item], link_speed: float, rebuild_rate: float) -> tuple[set[int], float, float]:
    """Indexes of the ops to ship ready-compressed, the simulated seconds before, and after."""
    before = simulate(items, (), link_speed, rebuild_rate)
    candidates = [i for i, it in enumerate(items) if it.plain > 0]
    candidates.sort(key=lambda i: (max(items[i].shipped_size - items[i].size, 0) / items[i].plain, i))
    budget = max(1, WORK // max(len(items), 1))  # trials; the best ratios come first
    chosen: set[int] = set()
    best = before
    trials = 0
    improved = True
    while improved and trials < budget:  # passes until no single op shipped or taken back helps
        improved = False
        for i in candidates:
            if trials >= budget:
                break
            chosen ^= {i}
            now = simulate(items, chosen, link_speed, rebuild_rate)
            trials += 1
            if now < best:
                best, improved = now, True
            else:
                chosen ^= {i}
    return chosen, before, best
