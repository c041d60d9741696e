"""Kill the applier at random points (SIGKILL, like a power cut) and run it again: it resumes and finishes."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from edge.delta import apply_delta, make_delta
from tests.delta.helpers import base_entries, edit, write


@pytest.fixture(scope="module")
def big_pair(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("big")
    base = base_entries(21, files=30, big=4)
    new_entries = []
    for e in edit(base, 21, changes=4):
        if e.path.startswith("big/"):  # change every block of the big files: lots of recompression
            from dataclasses import replace

            from edge.squashfs import BytesContent

            e = replace(e, content=BytesContent(b"prefix" + e.content.data[::-1]))
        new_entries.append(e)
    old = write(base, str(tmp / "old.sqfs"), compressor="xz")
    new = write(new_entries, str(tmp / "new.sqfs"), compressor="xz")
    delta = str(tmp / "d.delta")
    make_delta(old, new, delta, level=3)
    return old, new, delta


def test_sigkill_at_random_points_then_resume(tmp_path, big_pair):
    old, new, delta = big_pair
    target = str(tmp_path / "target.img")
    state = str(tmp_path / "state.json")
    cmd = [sys.executable, "-m", "edge", "delta", "apply", old, delta, "-o", target, "--state", state,
           "--checkpoint-every", "64K", "--json"]
    # how long an uninterrupted apply works after its first checkpoint, to spread the kills over it
    t0 = time.monotonic()
    subprocess.run(cmd[:7] + ["-o", str(tmp_path / "reference.img"), "--state", str(tmp_path / "ref.state")],
                   check=True, capture_output=True)
    work = time.monotonic() - t0

    def checkpoint_op() -> int:
        try:
            return int(json.load(open(state))["op"])
        except (OSError, ValueError, KeyError):
            return -1

    rnd = random.Random(7)
    kills = 0
    last = -1
    for attempt in range(500):
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # kill at a random moment after this run got further than the last one (a new checkpoint)
        while proc.poll() is None and checkpoint_op() <= last:
            time.sleep(0.002)
        if proc.poll() is None:
            time.sleep(rnd.uniform(0, min(0.05, work / 20)))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
            kills += 1
            last = checkpoint_op()
            # the state on disk is always a complete checkpoint, and the target never looks finished
            if os.path.exists(state):
                json.load(open(state))
            if os.path.exists(target):  # never looks like an image unless it is the finished, verified one
                data = open(target, "rb").read()
                assert data[:4] != b"hsqs" or data == open(new, "rb").read()
            continue
        out, err = proc.communicate()
        assert proc.returncode == 0, err
        result = json.loads(out)
        assert result["resumed_at_op"] is not None, "the final run did not resume from a checkpoint"
        break
    else:
        pytest.fail("the apply never finished")
    assert kills >= 3, "the test did not interrupt the apply"
    assert open(target, "rb").read() == open(new, "rb").read()
    assert not os.path.exists(state)


def test_checkpoint_hook_kills_at_every_checkpoint(tmp_path, big_pair):
    """Deterministic variant: die right after checkpoint k, for several k, and resume each time."""
    old, new, delta = big_pair
    target = str(tmp_path / "t.img")
    state = str(tmp_path / "s.json")
    seen_ops = []
    finished = None
    for k in (1, 2, 2, 3, 3):
        count = 0

        def hook(st):
            nonlocal count
            count += 1
            if count == k:
                seen_ops.append(st["op"])
                raise Die

        try:
            finished = apply_delta(old, delta, target, state_path=state, checkpoint_bytes=128 << 10, on_checkpoint=hook)
            break
        except Die:
            continue
    if finished is None:
        finished = apply_delta(old, delta, target, state_path=state, checkpoint_bytes=128 << 10)
    assert finished.resumed_at_op is not None and finished.resumed_at_op > 0
    assert open(target, "rb").read() == open(new, "rb").read()
    # every interrupted run got further than the one before
    assert seen_ops == sorted(seen_ops) and len(set(seen_ops)) == len(seen_ops) >= 3


class Die(Exception):
    """Stands for the applier being killed at a checkpoint (raised from its on_checkpoint hook)."""


def _stop_at_checkpoint(old: str, delta, target: str, state: str, when, checkpoint_bytes: int = 128 << 10) -> dict:  # type: ignore[no-untyped-def]
    """Apply ``delta`` until the first checkpoint for which ``when(checkpoint)`` holds; return the
    state file as that checkpoint left it."""
    def die(st):  # type: ignore[no-untyped-def]
        if when(st):
            raise Die

    with pytest.raises(Die):
        apply_delta(old, delta, target, state_path=state, checkpoint_bytes=checkpoint_bytes, on_checkpoint=die)
    return json.load(open(state))


def _interrupted_then_damaged(old: str, delta, target: str, state: str, **fields) -> None:  # type: ignore[no-untyped-def]
    """Stop an apply of ``delta`` at its second checkpoint, then set fields of its state file (a
    callable value gets the field's old value)."""
    saved = _stop_at_checkpoint(old, delta, target, state, lambda st: st["target_pos"])
    assert saved["status"] == "applying" and saved["op"] > 0
    for key, value in fields.items():
        saved[key] = value(saved[key]) if callable(value) else value
    with open(state, "w") as fh:
        json.dump(saved, fh)


@pytest.mark.parametrize("delta_pos", ["size", 10**9, 1 << 62])
def test_a_checkpoint_past_the_end_of_the_delta_starts_over(tmp_path, big_pair, delta_pos):
    """A damaged state file whose delta position lies at or past the delta's end (a real checkpoint
    cannot: END follows every op boundary) is not a checkpoint: the apply starts over and writes the
    image, instead of failing on every run ("truncated", or a bare "Invalid argument" from the seek)
    until someone removes the state file."""
    old, new, delta = big_pair
    target, state = str(tmp_path / "t.img"), str(tmp_path / "s.json")
    _interrupted_then_damaged(old, delta, target, state, delta_pos=os.path.getsize(delta) if delta_pos == "size" else delta_pos)
    finished = apply_delta(old, delta, target, state_path=state, checkpoint_bytes=128 << 10)
    assert finished.resumed_at_op is None
    assert open(target, "rb").read() == open(new, "rb").read()
    assert not os.path.exists(state)


def test_a_url_delta_with_a_checkpoint_past_its_end_starts_over(tmp_path, big_pair):
    """The same for `edge delta apply OLD URL`: the download's size (from the server's Content-Range
    total) bounds the checkpoint, where the server answers a start past the end with 416."""
    import http.server
    import shutil
    import threading

    from edge.cli.delta import _delta_source
    from tests.conftest import run_edge
    from tests.rangeserver import RangeHandler

    old, new, delta = big_pair
    shutil.copy(delta, tmp_path / "d.delta")
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    srv.root, srv.requests = str(tmp_path), []
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}/d.delta"
        target, state = str(tmp_path / "t.img"), str(tmp_path / "s.json")
        _interrupted_then_damaged(old, _delta_source(url), target, state, delta_pos=10**9)
        r = run_edge("delta", "apply", old, url, "-o", target, "--state", state, "--json")
        assert json.loads(r.stdout)["resumed_at_op"] is None
        assert open(target, "rb").read() == open(new, "rb").read()
        assert not os.path.exists(state)
    finally:
        srv.shutdown()


def test_a_checkpoint_with_a_wrong_delta_position_inside_the_delta_starts_over(tmp_path, big_pair):
    """A position inside the delta but not at an op boundary: the ops read from there do not make
    the image, so the apply starts over once (never a wrong image, never a failure on every run)."""
    old, new, delta = big_pair
    target, state = str(tmp_path / "t.img"), str(tmp_path / "s.json")
    _interrupted_then_damaged(old, delta, target, state, delta_pos=os.path.getsize(delta) // 2 + 1)
    finished = apply_delta(old, delta, target, state_path=state, checkpoint_bytes=128 << 10)
    assert finished.resumed_at_op is None
    assert open(target, "rb").read() == open(new, "rb").read()



def _feed_fifo(path: str, data: bytes):  # type: ignore[no-untyped-def]
    """A thread writing ``data`` into the FIFO ``path`` (an apply that stops early breaks the pipe)."""
    import threading

    def write() -> None:
        try:
            with open(path, "wb") as fh:
                fh.write(data)
        except BrokenPipeError:
            pass

    t = threading.Thread(target=write, daemon=True)
    t.start()
    return t


def test_a_delta_from_standard_input(tmp_path, big_pair):
    """`edge delta apply OLD -` and `edge delta info -`: the delta read front to back from a pipe."""
    old, new, delta = big_pair
    raw = open(delta, "rb").read()
    target = str(tmp_path / "t.img")
    env = dict(os.environ, EDGE_NO_PROGRESS="1")
    r = subprocess.run([sys.executable, "-m", "edge", "delta", "apply", old, "-", "-o", target, "--json"], input=raw,
                       capture_output=True, env=env)
    assert r.returncode == 0, r.stderr
    assert open(target, "rb").read() == open(new, "rb").read()
    r = subprocess.run([sys.executable, "-m", "edge", "delta", "info", "-", "--json"], input=raw, capture_output=True, env=env)
    assert r.returncode == 0 and json.loads(r.stdout)["size"] == len(raw)
    cut = subprocess.run([sys.executable, "-m", "edge", "delta", "apply", old, "-", "-o", target], input=raw[: len(raw) // 2],
                         capture_output=True, text=False, env=env)
    assert cut.returncode == 10 and b"stdin: truncated" in cut.stderr


def test_a_delta_from_a_pipe_resumes_by_skipping_what_was_applied(tmp_path, big_pair):
    """Stopped at a checkpoint, the same apply from a pipe again: the stream cannot seek, so the
    applier reads and drops the bytes before the checkpoint and goes on from its op."""
    old, new, delta = big_pair
    raw = open(delta, "rb").read()
    fifo, target, state = str(tmp_path / "fifo"), str(tmp_path / "t.img"), str(tmp_path / "s.json")
    os.mkfifo(fifo)
    feeder = _feed_fifo(fifo, raw)
    stopped = _stop_at_checkpoint(old, fifo, target, state, lambda st: st["op"] >= 3, checkpoint_bytes=64 << 10)
    feeder.join(10)
    assert stopped["op"] >= 3 and stopped["delta_pos"] > 0
    feeder = _feed_fifo(fifo, raw)
    done = apply_delta(old, fifo, target, state_path=state, checkpoint_bytes=64 << 10)
    feeder.join(10)
    assert done.resumed_at_op == stopped["op"]
    assert open(target, "rb").read() == open(new, "rb").read()


def test_a_pipe_that_cannot_restart_after_a_bad_resume_says_so_and_the_next_run_works(tmp_path, big_pair):
    """A checkpoint that fits but does not lead to the image (its held-back head changed): from a
    file the apply starts over at once; a pipe cannot be read again, so the checkpoint is removed with
    an error that says to run again, and the next run writes the image."""
    from edge.delta import DeltaError

    old, new, delta = big_pair
    raw = open(delta, "rb").read()
    fifo, target, state = str(tmp_path / "fifo"), str(tmp_path / "t.img"), str(tmp_path / "s.json")
    os.mkfifo(fifo)
    _interrupted_then_damaged(old, delta, target, state, head=lambda head: f"{int(head[:2], 16) ^ 0xFF:02x}{head[2:]}")
    feeder = _feed_fifo(fifo, raw)
    with pytest.raises(DeltaError, match="did not give this delta's image .*the checkpoint is removed: run the apply again"):
        apply_delta(old, fifo, target, state_path=state, checkpoint_bytes=128 << 10)
    feeder.join(10)
    assert not os.path.exists(state)
    feeder = _feed_fifo(fifo, raw)
    done = apply_delta(old, fifo, target, state_path=state, checkpoint_bytes=128 << 10)
    feeder.join(10)
    assert done.resumed_at_op is None
    assert open(target, "rb").read() == open(new, "rb").read()


def test_sigkill_during_a_url_apply_then_resume_downloads_only_the_rest(tmp_path, big_pair):
    """`edge delta apply OLD URL` killed (SIGKILL) after a checkpoint, several times, over a capped
    link: each run again asks the server for the bytes from the checkpoint's delta position on (a
    Range request), not for the whole delta, and the last run writes the image."""
    import http.server
    import shutil
    import threading

    from tests.rangeserver import RangeHandler

    old, new, delta = big_pair
    shutil.copy(delta, tmp_path / "d.delta")
    size = os.path.getsize(delta)
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    srv.root, srv.requests, srv.rate = str(tmp_path), [], size / 3  # about 3 s for the whole delta
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    target, state = str(tmp_path / "t.img"), str(tmp_path / "s.json")
    cmd = [sys.executable, "-m", "edge", "delta", "apply", old, f"http://127.0.0.1:{srv.server_address[1]}/d.delta",
           "-o", target, "--state", state, "--checkpoint-every", "64K", "--json"]

    def checkpoint() -> dict:
        try:
            return json.load(open(state))
        except (OSError, ValueError):
            return {}

    try:
        resumed_from = []
        for _ in range(3):
            last = checkpoint().get("op", -1)
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            while proc.poll() is None and checkpoint().get("op", -1) <= last:
                time.sleep(0.002)
            assert proc.poll() is None, "the apply finished before it could be killed"
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
            resumed_from.append(checkpoint()["delta_pos"])
            del srv.requests[:]
        r = subprocess.run(cmd, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["resumed_at_op"] is not None
        starts = [start for _, start in srv.requests]
        assert resumed_from[-1] in starts  # the ops were fetched from the checkpoint on
        assert all(start == 0 or start >= resumed_from[-1] for start in starts)  # (0: the header)
        assert resumed_from == sorted(resumed_from) and resumed_from[0] > 0
        assert open(target, "rb").read() == open(new, "rb").read()
    finally:
        srv.shutdown()
