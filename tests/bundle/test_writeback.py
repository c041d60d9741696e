"""The writeback writer writes exactly what it is given, to files and (without writeback) to pipes."""

from __future__ import annotations

import os
import random
import threading

from edge.bundle import writeback
from edge.bundle.writeback import WritebackWriter


def test_file_output_is_exact_and_writeback_engages(tmp_path):
    data = random.Random(3).randbytes(3 * 1024 * 1024 + 123)
    path = tmp_path / "out"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        out = WritebackWriter(fd, window=256 * 1024)
        for i in range(0, len(data), 100_000):
            out.write(memoryview(data)[i:i + 100_000])
        assert out.position == len(data)
        assert writeback._sync_file_range is not None  # Linux: the overlap is really in use
        assert out._enabled and out._initiated > 0 and len(out._pending) == 2
    finally:
        os.close(fd)
    assert path.read_bytes() == data


def test_pipe_output_falls_back_without_losing_data():
    data = random.Random(4).randbytes(600_000)
    r, w = os.pipe()
    received = bytearray()

    def drain() -> None:
        while chunk := os.read(r, 65536):
            received.extend(chunk)

    reader = threading.Thread(target=drain)
    reader.start()
    out = WritebackWriter(w, window=64 * 1024)
    for i in range(0, len(data), 50_000):
        out.write(data[i:i + 50_000])
    os.close(w)
    reader.join()
    os.close(r)
    assert bytes(received) == data and not out._enabled  # sync_file_range refuses pipes (ESPIPE)
