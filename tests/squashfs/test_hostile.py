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
