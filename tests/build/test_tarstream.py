"""The strict tar reader against archives written by Python's tarfile and GNU tar, and against hostile ones."""

from __future__ import annotations

import os
import tarfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.build.errors import SourceError
from edge.build.tarstream import iter_members
from edge.squashfs.tree import Kind
from tests.build.helpers import tar_bytes
from tests.conftest import IS_ROOT, require_tool, run

KINDS = {tarfile.REGTYPE: Kind.FILE, tarfile.AREGTYPE: Kind.FILE, tarfile.DIRTYPE: Kind.DIR, tarfile.SYMTYPE: Kind.SYMLINK,
         tarfile.LNKTYPE: Kind.HARDLINK, tarfile.CHRTYPE: Kind.CHAR, tarfile.BLKTYPE: Kind.BLOCK, tarfile.FIFOTYPE: Kind.FIFO}


def members_of(path, **kw):
    return list(iter_members(str(path), **kw))


def write(tmp_path, data: bytes, name="a.tar"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def sample_members():
    long_dir = "d" * 120 + "/" + "e" * 90
    return [
        ("./", "dir", {}),
        ("etc", "dir", {"mode": 0o750, "uid": 0, "gid": 42}),
        ("etc/hosts", "file", {"data": b"127.0.0.1 localhost\n", "uid": 1000, "gid": 1001, "mode": 0o640}),
        (f"{long_dir}/file-with-a-very-long-name-" + "x" * 120, "file", {"data": b"long\n" * 300}),
        ("etc/hosts.link", "hardlink", {"target": "etc/hosts"}),
        ("bin", "symlink", {"target": "usr/bin"}),
        ("abs", "symlink", {"target": "/etc/../../outside"}),
        ("dev/null", "char", {"major": 1, "minor": 3, "mode": 0o666}),
        ("run/fifo", "fifo", {}),
        ("big-uid", "file", {"data": b"u", "uid": 3_000_000, "gid": 70_000}),
    ]


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT], ids=["pax", "gnu"])
def test_members_match_tarfile(tmp_path, fmt):
    data = tar_bytes(sample_members(), fmt)
    path = write(tmp_path, data)
    ours = members_of(path)
    with tarfile.open(path) as tar:
        theirs = tar.getmembers()
    assert len(ours) == len(theirs)
    for mine, ref in zip(ours, theirs):
        assert mine.path == ref.name.strip("/").removeprefix("./").strip(".")
        assert mine.kind is KINDS[ref.type]
        assert (mine.mode, mine.uid, mine.gid, mine.mtime) == (ref.mode, ref.uid, ref.gid, ref.mtime)
        if mine.kind is Kind.FILE:
            assert mine.size == ref.size
            with tarfile.open(path) as again:
                assert data[mine.data_offset:mine.data_offset + mine.size] == again.extractfile(ref.name).read()
        if mine.kind in (Kind.SYMLINK, Kind.HARDLINK):
            assert mine.linkname == ref.linkname
        if mine.kind is Kind.CHAR:
            assert (mine.major, mine.minor) == (ref.devmajor, ref.devminor)


def test_ustar_prefix_field(tmp_path):
    name = "p" * 100 + "/" + "q" * 50 + "/file"
    path = write(tmp_path, tar_bytes([(name, "file", {"data": b"x"})], tarfile.USTAR_FORMAT))
    assert path.read_bytes()[345:350] == b"ppppp"  # the name really went into the prefix field
    (member,) = members_of(path)
    assert member.path == name


def test_gnu_tar_posix_archive_with_xattrs_and_devices(tmp_path):
    tar = require_tool("tar")
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "file").write_bytes(b"content\n")
    os.setxattr(src / "sub" / "file", "user.edge", b"\x00binary\xff value")
    os.link(src / "sub" / "file", src / "link")
    os.symlink("sub/file", src / "sym")
    if IS_ROOT:
        os.mknod(src / "sda", 0o660 | 0o060000, os.makedev(8, 1))
    archive = tmp_path / "gnu.tar"
    run(tar, "--xattrs", "--xattrs-include=*", "--format=posix", "--numeric-owner", "-C", str(src), "-cf", str(archive), ".")
    by_path = {m.path: m for m in members_of(archive)}
    # readdir order decides which name carries the data; the other is a hard link to it
    first, second = sorted(("sub/file", "link"), key=lambda p: by_path[p].kind is Kind.HARDLINK)
    assert by_path[first].kind is Kind.FILE and by_path[first].xattrs == (("user.edge", b"\x00binary\xff value"),)
    assert by_path[second].kind is Kind.HARDLINK and by_path[second].linkname == first
    assert by_path["sym"].kind is Kind.SYMLINK and by_path["sym"].linkname == "sub/file"
    if IS_ROOT:
        assert (by_path["sda"].kind, by_path["sda"].major, by_path["sda"].minor) == (Kind.BLOCK, 8, 1)


def test_archive_without_end_blocks_is_accepted(tmp_path):
    # umoci writes layers without the two zero blocks at the end
    data = tar_bytes([("a", "file", {"data": b"1"}), ("b", "file", {"data": b"2"})])
    end = 512 * 4  # two members of one header + one data block each
    assert data[end:].strip(b"\0") == b""
    assert [m.path for m in members_of(write(tmp_path, data[:end]))] == ["a", "b"]


def test_absolute_names_are_anchored_at_the_root(tmp_path):
    data = tar_bytes([("/etc/passwd", "file", {"data": b"x"}), ("/", "dir", {})])
    assert [m.path for m in members_of(write(tmp_path, data))] == ["etc/passwd", ""]


@pytest.mark.parametrize("name", ["../evil", "a/../../evil", "a/../b"])
def test_dotdot_names_are_refused(tmp_path, name):
    path = write(tmp_path, tar_bytes([("ok", "file", {"data": b"1"}), (name, "file", {"data": b"x"})]))
    with pytest.raises(SourceError, match=r"climbs out of the root"):
        members_of(path, label="layer sha256:abc")


def test_overlong_path_is_refused(tmp_path):
    path = write(tmp_path, tar_bytes([("d/" * 2100 + "f", "file", {"data": b"x"})]))
    with pytest.raises(SourceError, match="is longer than 4096 bytes"):
        members_of(path)


def test_hard_link_target_with_dotdot_is_refused(tmp_path):
    path = write(tmp_path, tar_bytes([("x", "hardlink", {"target": "../../etc/shadow"})]))
    with pytest.raises(SourceError, match="hard link target.*climbs out"):
        members_of(path)


def test_bad_checksum_names_the_archive_and_offset(tmp_path):
    data = bytearray(tar_bytes([("a", "file", {"data": b"1"}), ("b", "file", {"data": b"2"})]))
    data[1024 + 10] ^= 0x55  # inside the second header's name
    with pytest.raises(SourceError, match=r"layer sha256:feed: bad header checksum .*byte 1024"):
        members_of(write(tmp_path, bytes(data)), label="layer sha256:feed")


def test_truncated_member_is_an_error(tmp_path):
    data = tar_bytes([("a", "file", {"data": os.urandom(5000)})])
    with pytest.raises(SourceError, match="truncated: member 'a' claims 5000 bytes"):
        members_of(write(tmp_path, data[:2048]))


def test_huge_claimed_size_fails_fast_without_reading(tmp_path):
    # base-256 size field claiming 2**62 bytes, in a 1 KiB file
    header = bytearray(tar_bytes([("a", "file", {"data": b""})])[:512])
    header[124:136] = b"\x80" + bytes(3) + (1 << 62).to_bytes(8, "big")
    header[148:156] = b"        "
    header[148:156] = b"%06o\0 " % sum(header)
    with pytest.raises(SourceError, match="claims 4611686018427387904 bytes"):
        members_of(write(tmp_path, bytes(header) + bytes(512)))


def test_oversized_pax_header_is_refused(tmp_path):
    data = tar_bytes([("a", "file", {"data": b"1", "pax": {"comment": "x" * (1 << 20)}})])
    with pytest.raises(SourceError, match="exceeds the limit"):
        members_of(write(tmp_path, data))


def test_malformed_pax_record_is_an_error(tmp_path):
    data = bytearray(tar_bytes([("a", "file", {"data": b"1", "pax": {"comment": "hello"}})]))
    start = data.find(b"comment=hello")
    data[start - 3:start - 1] = b"99"  # a record length running past the header
    with pytest.raises(SourceError, match="malformed pax record at byte 0"):
        members_of(write(tmp_path, bytes(data)))


def test_sparse_and_unknown_member_types_are_refused(tmp_path):
    for typeflag, message in ((b"S", "sparse members are not supported"), (b"Z", "unsupported member type")):
        header = bytearray(tar_bytes([("a", "file", {"data": b""})], tarfile.GNU_FORMAT)[:512])
        header[156:157] = typeflag
        header[148:156] = b"        "
        header[148:156] = b"%06o\0 " % sum(header)
        with pytest.raises(SourceError, match=message):
            members_of(write(tmp_path, bytes(header) + bytes(1024), f"{typeflag.decode()}.tar"))


def test_not_a_tar_is_a_clear_error(tmp_path):
    with pytest.raises(SourceError, match="checksum"):
        members_of(write(tmp_path, b"this is not a tar archive at all " * 40))


def test_region_inside_a_larger_file(tmp_path):
    inner = tar_bytes([("a", "file", {"data": b"hello"})])
    blob = b"X" * 700 + inner + b"Y" * 300
    path = write(tmp_path, blob)
    (member,) = members_of(path, start=700, end=700 + len(inner))
    assert blob[member.data_offset:member.data_offset + 5] == b"hello"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_corrupted_archives_only_raise_source_errors(tmp_path, data):
    archive = bytearray(tar_bytes(sample_members()))
    for _ in range(data.draw(st.integers(1, 8))):
        pos = data.draw(st.integers(0, len(archive) - 1))
        archive[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(archive)))
    path = tmp_path / "fuzz.tar"
    path.write_bytes(bytes(archive[:cut]))
    try:
        for member in iter_members(str(path)):
            assert ".." not in member.path.split("/")
            assert member.data_offset + member.size <= cut
    except SourceError:
        pass
