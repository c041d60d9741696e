"""Ship a changed block ready-compressed, or rebuild it on the device? (pure)

A BLOCKS op is the smallest way to send a changed file, but the device pays for
it in CPU: every block is recompressed with the image's compressor, and at zstd
level 19 that runs at a few MB/s per core.  Sending the op's stored (compressed)
bytes instead costs more download and no CPU.  Which is faster depends on the
device's link and CPU, so the generator only makes this trade when told both.

The device applies a delta while it downloads (``edge install URL`` streams with
Range requests), so the time to updated is modelled as
``max(delta bytes / link speed, rebuilt plain bytes / rebuild rate)``: the
download and the recompression overlap, and whichever is slower sets the pace.
``choose`` moves the ops that buy the most rebuild time per extra byte to
"shipped" while that lowers the estimate.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Candidate:
    """One BLOCKS op: ``plain`` bytes the device would recompress; ``extra`` delta bytes if shipped compressed."""

    plain: int
    extra: int


@dataclass(frozen=True, slots=True)
class Estimate:
    download_seconds: float
    rebuild_seconds: float

    @property
    def seconds(self) -> float:
        return max(self.download_seconds, self.rebuild_seconds)


def estimate(delta_bytes: int, rebuild_bytes: int, link_speed: float, rebuild_rate: float) -> Estimate:
    if link_speed <= 0 or rebuild_rate <= 0:
        raise ValueError("link speed and rebuild rate must be positive")
    return Estimate(delta_bytes / link_speed, rebuild_bytes / rebuild_rate)


def choose(candidates: list[Candidate], delta_bytes: int, link_speed: float,
           rebuild_rate: float) -> tuple[set[int], Estimate, Estimate]:
    """Indexes of the candidates to ship compressed, the estimate before, and the estimate after.

    ``delta_bytes`` is the size of the delta with every candidate rebuilt on the device.
    """
    rebuild = sum(c.plain for c in candidates)
    before = estimate(delta_bytes, rebuild, link_speed, rebuild_rate)
    best = before
    order = sorted(range(len(candidates)), key=lambda i: (max(candidates[i].extra, 0) / max(candidates[i].plain, 1), i))
    chosen: set[int] = set()
    taken: list[int] = []
    size, work = delta_bytes, rebuild
    for i in order:
        c = candidates[i]
        if c.plain <= 0:
            continue
        size += max(c.extra, 0)
        work -= c.plain
        taken.append(i)
        now = estimate(size, work, link_speed, rebuild_rate)
        if now.seconds < best.seconds:
            best = now
            chosen = set(taken)
        elif now.download_seconds >= now.rebuild_seconds:
            break  # the download sets the pace from here on: shipping more only adds bytes
    return chosen, before, best
