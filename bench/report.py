"""Keep docs/benchmarks.md up to date: each benchmark owns one marked section.

A benchmark script calls ``update_section(name, markdown)``; the text between
``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->`` is replaced (or appended
when missing), so benchmarks can be re-run one at a time.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import time

DOC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "benchmarks.md")
HEADER = """# Benchmarks

Every number here is written by a script under `bench/`; each section names the
command that reproduces it. Comparisons are ratios measured in the same run on
the same (shared, noisy) machine.
"""


def machine_line() -> str:
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=os.path.dirname(DOC)).stdout.strip() or "unknown"
    # Tracked code changed since that commit (docs/ excluded: the benchmarks write there) is measured too: say so.
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!docs"],
                           capture_output=True, text=True, cwd=os.path.dirname(os.path.dirname(DOC))).stdout.strip()
    if dirty and commit != "unknown":
        commit += " plus uncommitted changes"
    return (f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {os.cpu_count()} x {cpu}, "
            f"Python {platform.python_version()}, commit {commit}.")


def update_section(name: str, markdown: str) -> None:
    begin, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{begin}\n{markdown.strip()}\n{end}"
    text = open(DOC).read() if os.path.exists(DOC) else HEADER
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    with open(DOC, "w") as fh:
        fh.write(text)
