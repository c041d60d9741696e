"""Hand-crafted hostile images: loops, absurd sizes, offsets outside the image, truncation in every region."""

from __future__ import annotations

import io
import struct

import pytest

from edge.squashfs import BytesContent, Entry, Kind, SquashfsError, SquashfsImage, Tree, WriterOptions, write_image
from edge.squashfs import format as fmt
from tests.squashfs.test_hypothesis import exercise


def plain_image(entries) -> bytearray:
    buf = io.BytesIO()
    write_image(Tree.from_entries(entries), buf, WriterOptions(compress_metadata=False, exportable=False))
    return bytearray(buf.getvalue())


def sb(image: bytes) -> fmt.Superblock:
    return fmt.Superblock.unpack(bytes(image[:96]))


def read_all(image: bytes) -> None:
    with SquashfsImage(io.BytesIO(bytes(image)), name="hostile.sqfs") as img:
        for _, inode in img.walk():
            if inode.is_file:
                img.read_file(inode)
        img.layout()


def test_directory_loop_is_refused():
    image = plain_image([Entry("a/b/c", Kind.FILE, content=BytesContent(b"x"))])
    s = sb(image)
    # the directory table is one uncompressed metadata block: find the entry named "b" and point it at the root
    table = s.directory_table + 2
    pos = bytes(image).index(b"b", table)  # name of the single entry in a's listing
    entry_pos = pos - fmt.DIR_ENTRY.size
    header_pos = entry_pos - fmt.DIR_HEADER.size
    count, start, base = fmt.DIR_HEADER.unpack_from(image, header_pos)
    root_block, root_off = fmt.split_ref(s.root_inode)
    struct.pack_into("<III", image, header_pos, count, root_block, s.inode_count)
    struct.pack_into("<Hh", image, entry_pos, root_off, 0)
    with pytest.raises(SquashfsError, match="directory loop"):
        read_all(image)


def test_absurd_file_size_is_refused_without_allocating_it():
    image = plain_image([Entry("big", Kind.FILE, content=BytesContent(b"x" * 200_000), uid=0)])
    s = sb(image)
    # the file inode is the first inode; basic regular file: header(16) + start, frag, offset, size
    pos = s.inode_table + 2
    assert struct.unpack_from("<H", image, pos)[0] == fmt.T_FILE
    struct.pack_into("<I", image, pos + 16 + 12, 0xFFFFFFF0)  # file size ~ 4 GiB: 32767 block pointers claimed
    with pytest.raises(SquashfsError, match="block pointers|outside|covered|past"):
        read_all(image)


def test_extended_file_size_of_an_exabyte_is_refused():
    image = plain_image([Entry("big", Kind.FILE, content=BytesContent(b"x" * 200_000), xattrs=(("user.k", b"v"),))])
    s = sb(image)
    pos = s.inode_table + 2
    assert struct.unpack_from("<H", image, pos)[0] == fmt.T_LFILE
    struct.pack_into("<Q", image, pos + 16 + 8, 1 << 60)
    with pytest.raises(SquashfsError, match="block pointers"):
        read_all(image)


def test_data_offset_outside_the_image_is_refused():
    image = plain_image([Entry("big", Kind.FILE, content=BytesContent(b"x" * 200_000))])
    s = sb(image)
    pos = s.inode_table + 2
    struct.pack_into("<I", image, pos + 16, 0xFFFFFF00)  # blocks_start
    with pytest.raises(SquashfsError, match="outside the image"):
        read_all(image)


def test_superblock_tables_outside_the_image_are_refused():
    image = plain_image([Entry("a", Kind.FILE, content=BytesContent(b"x"))])
    for offset in (48, 56, 64, 72):  # id, xattr, inode, directory table
        bad = bytearray(image)
        struct.pack_into("<Q", bad, offset, 1 << 40)
        with pytest.raises(SquashfsError):
            read_all(bad)


def test_not_squashfs_and_wrong_version():
    with pytest.raises(SquashfsError, match="not a squashfs image"):
        read_all(b"\0" * 4096)
    image = plain_image([Entry("a", Kind.FILE, content=BytesContent(b"x"))])
    struct.pack_into("<H", image, 28, 3)
    with pytest.raises(SquashfsError, match="version 3.0 is not supported"):
        read_all(image)


def test_truncation_in_every_region_names_the_problem():
    buf = io.BytesIO()
    entries = [Entry(f"d{i}/f", Kind.FILE, content=BytesContent(bytes([i]) * 9000), xattrs=(("user.i", bytes([i])),))
               for i in range(40)]
    write_image(Tree.from_entries(entries), buf, WriterOptions(block_size=4096))
    image = buf.getvalue()
    s = sb(image)
    cuts = {0, 50, 95, 96, 200, s.inode_table + 1, s.directory_table + 1, s.fragment_table + 1,
            s.export_table + 1, s.id_table + 1, s.xattr_id_table + 1, s.bytes_used - 1}
    for cut in sorted(cuts):
        with pytest.raises(SquashfsError) as err:
            read_all(image[:cut])
        assert "hostile.sqfs" in str(err.value)


def test_exercise_helper_really_reads_content():
    """Guard for the property tests: on an intact image, exercise() reads everything without error."""
    from tests.squashfs.test_hypothesis import SAMPLES

    for data in SAMPLES.values():
        read_all(data)
        exercise(data)



def test_a_refused_image_path_leaves_no_open_file(tmp_path):
    """SquashfsImage(path) closes the file it opened when it refuses the image (no ResourceWarning
    for an unclosed file when the half-built object is collected)."""
    import gc
    import warnings

    bad = tmp_path / "bad.sqfs"
    bad.write_bytes(b"not a squashfs image" * 10)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        for _ in range(5):
            with pytest.raises(SquashfsError):
                SquashfsImage(str(bad))
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


def sparse_bomb(count: int, links: int, block_size: int = 4096, first: bytes = bytes(range(256)) * 16) -> bytes:
    """A hand-built zstd image of a few KiB: one extended file inode declaring ``count`` blocks (the
    first real, the rest holes: a few bytes of compressed inode table each), listed under ``links``
    names in the root. Legal squashfs; the kernel would mount it."""
    import zstandard

    cz = zstandard.ZstdCompressor(level=15)

    def metadata(stream: bytes) -> tuple[bytes, list[int]]:
        out, starts = bytearray(), []
        for i in range(0, len(stream), fmt.METADATA_SIZE):
            starts.append(len(out))
            chunk = stream[i : i + fmt.METADATA_SIZE]
            packed = cz.compress(chunk)
            out += struct.pack("<H", len(packed)) + packed if len(packed) < len(chunk) else struct.pack("<H", len(chunk) | 0x8000) + chunk
        return bytes(out), starts

    image = bytearray(fmt.SUPERBLOCK_SIZE)
    block = cz.compress(first[:block_size].ljust(block_size, b"\0"))
    image += block
    inodes = bytearray(fmt.INODE_HEADER.pack(fmt.T_LFILE, 0o644, 0, 0, 0, 1))
    inodes += fmt.LFILE_INODE.pack(fmt.SUPERBLOCK_SIZE, count * block_size, 0, links, fmt.INVALID_FRAGMENT, 0, fmt.INVALID_XATTR)
    inodes += struct.pack("<I", len(block)) + bytes(4 * (count - 1))
    root_pos = len(inodes)
    listing = bytearray()
    names = sorted(f"f{i}".encode() for i in range(links))
    for h in range(0, links, 256):
        group = names[h : h + 256]
        listing += fmt.DIR_HEADER.pack(len(group) - 1, 0, 1)
        for name in group:
            listing += fmt.DIR_ENTRY.pack(0, 0, fmt.T_FILE, len(name) - 1) + name
    inodes += fmt.INODE_HEADER.pack(fmt.T_DIR, 0o755, 0, 0, 0, 2)
    inodes += fmt.DIR_INODE.pack(0, 2, len(listing) + 3, 0, 3)
    inode_table, starts = metadata(bytes(inodes))
    root_ref = fmt.inode_ref(starts[root_pos // fmt.METADATA_SIZE], root_pos % fmt.METADATA_SIZE)
    directory_table, _ = metadata(bytes(listing))
    ids, _ = metadata(struct.pack("<I", 0))
    at = {"inode": len(image)}
    image += inode_table
    at["directory"] = len(image)
    image += directory_table
    at["ids"] = len(image)
    image += ids
    at["id index"] = len(image)
    image += struct.pack("<Q", at["ids"])
    flags = fmt.FLAG_NO_FRAGMENTS | fmt.FLAG_NO_XATTRS
    image[: fmt.SUPERBLOCK_SIZE] = fmt.SUPERBLOCK.pack(
        fmt.MAGIC, 2, 0, block_size, 0, fmt.COMP_ZSTD, block_size.bit_length() - 1, flags, 1, 4, 0,
        root_ref, len(image), at["id index"], fmt.NO_TABLE, at["inode"], at["directory"], fmt.NO_TABLE, fmt.NO_TABLE)
    return bytes(image) + bytes(-len(image) % 4096)


def test_hand_built_sparse_image_is_valid_squashfs(tmp_path):
    """Guard for the tests below: unsquashfs (squashfs-tools) lists the hand-built image."""
    from tests.conftest import require_tool, run

    path = tmp_path / "bomb.sqfs"
    path.write_bytes(sparse_bomb(1000, 3))
    out = run(require_tool("unsquashfs"), "-lls", str(path)).stdout
    assert out.count(str(1000 * 4096)) == 3, out
    with SquashfsImage(str(path)) as img:
        assert img.read_file(img.lookup("f1"))[:512] == bytes(range(256)) * 2


def test_hard_links_to_a_huge_sparse_file_are_walked_once_in_memory():
    """300 names of one inode declaring a million blocks: the walk holds one parsed inode, not one per
    name (it reached 2.4 GB), and the layout shares one object per run of holes (10M holes took 1.2 GB)."""
    import tracemalloc

    image = sparse_bomb(1_000_000, 300)
    assert len(image) < 64 << 10
    tracemalloc.start()
    try:
        with SquashfsImage(io.BytesIO(image), name="bomb.sqfs") as img:
            names = sum(1 for _, inode in img.walk() if inode.is_file)
            lay = img.layout()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert names == 300 and len(lay.files) == 1 and len(lay.files[0].blocks) == 1_000_000
    assert lay.files[0].blocks[1].stored_size == 0 and lay.files[0].blocks[0].stored_size > 0
    assert peak < 48 << 20, f"peak {peak >> 20} MiB"


def test_block_pointers_past_the_layout_budget_are_refused(monkeypatch):
    from edge.squashfs import reader

    monkeypatch.setattr(reader, "MAX_LAYOUT_BLOCKS", 5000)
    with SquashfsImage(io.BytesIO(sparse_bomb(3000, 1)), name="bomb.sqfs") as img:
        assert len(img.layout().files[0].blocks) == 3000
    with SquashfsImage(io.BytesIO(sparse_bomb(6000, 1)), name="bomb.sqfs") as img:
        with pytest.raises(SquashfsError, match=r"bomb.sqfs: f0: the image has more than 5000 block pointers"):
            img.layout()


def test_fragment_table_longer_than_the_data_area_is_refused():
    """A fragment table of a few compressed bytes can list millions of entries; each fragment block
    takes at least a byte of the data area, so a longer table is refused before it is listed."""
    image = plain_image([Entry("a", Kind.FILE, content=BytesContent(b"tail" * 10))])
    s = sb(image)
    assert s.fragment_count == 1
    data_bytes = s.inode_table - fmt.SUPERBLOCK_SIZE
    struct.pack_into("<I", image, 16, data_bytes + 1)  # fragment count; its index still fits the image
    with SquashfsImage(io.BytesIO(bytes(image)), name="frag.sqfs") as img:
        with pytest.raises(SquashfsError, match=f"lists {data_bytes + 1} fragment blocks; the data area holds {data_bytes} bytes"):
            img.layout()
