"""Metadata blocks: the 8 KiB compressed units inode, directory and lookup tables are made of."""

from __future__ import annotations

from .compressors import Codec
from .format import METADATA_SIZE, METADATA_UNCOMPRESSED, U16


class MetadataWriter:
    """Appends bytes to a metadata stream, compressing each full 8 KiB block as it fills.

    ``ref()`` gives (block start relative to the table, offset in the block)
    for the next byte written, the pair squashfs inode references are made of.
    """

    def __init__(self, codec: Codec, compress: bool = True) -> None:
        self._codec = codec.for_metadata()
        self._compress = compress
        self._buf = bytearray()
        self._out = bytearray()
        self.uncompressed_pos = 0  # bytes written so far, before compression

    def ref(self) -> tuple[int, int]:
        return len(self._out), len(self._buf)

    def write(self, data: bytes) -> None:
        self._buf += data
        self.uncompressed_pos += len(data)
        while len(self._buf) >= METADATA_SIZE:
            self._flush(bytes(self._buf[:METADATA_SIZE]))
            del self._buf[:METADATA_SIZE]

    def _flush(self, block: bytes) -> None:
        packed = self._codec.compress(block) if self._compress else block
        if self._compress and len(packed) < len(block):
            self._out += U16.pack(len(packed)) + packed
        else:
            self._out += U16.pack(len(block) | METADATA_UNCOMPRESSED) + block

    def block_starts(self) -> list[int]:
        """Relative start of every block written so far (call after finish)."""
        starts, pos = [], 0
        out = self._out
        while pos < len(out):
            starts.append(pos)
            (word,) = U16.unpack_from(out, pos)
            pos += 2 + (word & ~METADATA_UNCOMPRESSED)
        return starts

    def finish(self) -> bytes:
        """Flush the last partial block and return the whole table."""
        if self._buf:
            self._flush(bytes(self._buf))
            self._buf.clear()
        return bytes(self._out)


def pack_table(codec: Codec, data: bytes, table_start: int, compress: bool = True) -> tuple[bytes, bytes]:
    """A lookup table (ids, fragments, export, xattr ids): its metadata blocks and the u64 index.

    ``table_start`` is where the first metadata block will land in the image;
    returns (metadata blocks, index of absolute block positions).
    """
    writer = MetadataWriter(codec, compress)
    writer.write(data)
    blocks = writer.finish()
    index = b"".join((table_start + s).to_bytes(8, "little") for s in writer.block_starts())
    return blocks, index
