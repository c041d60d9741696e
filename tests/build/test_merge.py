"""Layer application: OCI whiteouts, opaque directories, hard links across layers, replacement rules.

The hypothesis test applies random layer stacks (written by Python's tarfile)
and compares the result with a deliberately simple reference model of the
image-spec rules: a flat dict of path -> (kind, content), one inode id per
hard-link group.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.build.blobs import BlobCache
from edge.build.errors import SourceError
from edge.build.merge import RootfsTree, glob_regex
from edge.build.sources import tar_entries
from edge.squashfs.tree import Kind
from tests.build.helpers import tar_bytes


def apply_layers(tmp_path, cache: BlobCache, layers: list[list[tuple[str, str, dict]]]) -> RootfsTree:
    tree = RootfsTree()
    for i, members in enumerate(layers):
        path = tmp_path / f"layer{i}-{id(members)}.tar"
        path.write_bytes(tar_bytes(members))
        view = cache.uncompressed(str(path), 0, path.stat().st_size, label=f"layer {i}")
        tree.apply_layer(tar_entries(view, f"layer {i}"), label=f"layer {i}")
    return tree


def content(tree: RootfsTree, path: str) -> bytes:
    entry = tree.entry(path)
    assert entry is not None and entry.content is not None
    with entry.content.open() as fh:
        return fh.read()


@pytest.fixture
def cache(tmp_path):
    with BlobCache(str(tmp_path)) as c:
        yield c


def paths(tree: RootfsTree) -> list[str]:
    return [p for p, _ in tree.walk() if p]


def test_whiteout_and_opaque_follow_the_spec_example(tmp_path, cache):
    # image-spec layer.md: a/b/c/bar in the base; the next layer makes a/ opaque and recreates a/b/c/foo
    base = [("a", "dir", {}), ("a/b", "dir", {}), ("a/b/c", "dir", {}), ("a/b/c/bar", "file", {"data": b"bar"}),
            ("keep", "file", {"data": b"k"}), ("gone", "file", {"data": b"g"})]
    top = [("a", "dir", {}), ("a/b", "dir", {}), ("a/b/c", "dir", {}), ("a/b/c/foo", "file", {"data": b"foo"}),
           ("a/.wh..wh..opq", "file", {}), (".wh.gone", "file", {})]  # whiteouts after siblings: still applied first
    tree = apply_layers(tmp_path, cache, [base, top])
    assert paths(tree) == ["a", "a/b", "a/b/c", "a/b/c/foo", "keep"]


def test_whiteout_only_hides_lower_layers(tmp_path, cache):
    top = [("x", "file", {"data": b"same layer"}), (".wh.x", "file", {})]
    tree = apply_layers(tmp_path, cache, [[("x", "file", {"data": b"lower"})], top])
    assert content(tree, "x") == b"same layer"


def test_whiteout_of_a_directory_removes_its_subtree(tmp_path, cache):
    tree = apply_layers(tmp_path, cache, [[("d/e/f", "file", {"data": b"1"})], [(".wh.d", "file", {})]])
    assert paths(tree) == []


def test_aufs_metadata_names_never_appear(tmp_path, cache):
    tree = apply_layers(tmp_path, cache, [[(".wh..wh.plnk", "dir", {}), (".wh..wh.plnk/123.456", "file", {}), ("f", "file", {})]])
    assert paths(tree) == ["f"]


def test_directory_over_directory_keeps_children_and_takes_attributes(tmp_path, cache):
    tree = apply_layers(tmp_path, cache, [[("d", "dir", {"mode": 0o700}), ("d/child", "file", {})],
                                         [("d", "dir", {"mode": 0o755, "uid": 7})]])
    assert paths(tree) == ["d", "d/child"]
    entry = tree.entry("d")
    assert entry is not None and (entry.mode, entry.uid) == (0o755, 7)


def test_file_over_directory_replaces_the_subtree(tmp_path, cache):
    tree = apply_layers(tmp_path, cache, [[("d/child", "file", {})], [("d", "file", {"data": b"now a file"})]])
    assert paths(tree) == ["d"] and content(tree, "d") == b"now a file"


def test_hard_link_to_a_lower_layer_and_later_replacement(tmp_path, cache):
    tree = apply_layers(tmp_path, cache, [
        [("orig", "file", {"data": b"v1", "mode": 0o600})],
        [("link", "hardlink", {"target": "orig"})],
        [("orig", "file", {"data": b"v2"})],  # unlink + create: the link keeps v1
    ])
    assert content(tree, "link") == b"v1" and content(tree, "orig") == b"v2"
    squash = tree.to_tree()
    assert squash.get("link").entry.kind is Kind.FILE  # no longer a link: its group has one name


@pytest.mark.parametrize("order", ["link-first", "whiteout-first"])
def test_a_whiteout_applies_before_the_layers_own_links(tmp_path, cache, order):
    # whiteouts hide z before the layer's entries apply, whatever the order in the tar: the link has nothing to point to
    top = [("a", "hardlink", {"target": "z"}), (".wh.z", "file", {})]
    if order == "whiteout-first":
        top.reverse()
    with pytest.raises(SourceError, match="layer 1: hard link /a points to /z, which does not exist"):
        apply_layers(tmp_path, cache, [[("z", "file", {"data": b"x"})], top])


def test_hard_link_group_survives_losing_its_first_name(tmp_path, cache):
    tree = apply_layers(tmp_path, cache, [[("b", "file", {"data": b"x"}), ("c", "hardlink", {"target": "b"}),
                                           ("d", "hardlink", {"target": "b"})], [(".wh.b", "file", {})]])
    squash = tree.to_tree()
    assert squash.get("c").entry.kind is Kind.FILE
    assert squash.get("d").entry.kind is Kind.HARDLINK and squash.get("d").entry.target == "c"


def test_hard_link_to_a_directory_is_an_error(tmp_path, cache):
    with pytest.raises(SourceError, match="points to directory"):
        apply_layers(tmp_path, cache, [[("d", "dir", {}), ("x", "hardlink", {"target": "d"})]])


def test_symlinks_in_the_way_are_never_followed(tmp_path, cache):
    # a lower symlink "etc" -> "/host/etc"; a later layer writes etc/passwd: it must land in the image, not via the link
    tree = apply_layers(tmp_path, cache, [[("etc", "symlink", {"target": "/host/etc"})], [("etc/passwd", "file", {"data": b"p"})]])
    assert tree.entry("etc").kind is Kind.DIR and content(tree, "etc/passwd") == b"p"
    # and a whiteout through a symlink deletes nothing
    tree = apply_layers(tmp_path, cache, [[("real/f", "file", {}), ("lnk", "symlink", {"target": "real"})], [("lnk/.wh.f", "file", {})]])
    assert "real/f" in paths(tree)


def test_resolve_follows_links_inside_the_tree_only(tmp_path, cache):
    tree = apply_layers(tmp_path, cache, [[("usr/bin/busybox", "file", {"data": b"\x7fELF"}),
                                           ("bin", "symlink", {"target": "usr/bin"}),
                                           ("usr/bin/sh", "symlink", {"target": "/bin/busybox"}),
                                           ("loop", "symlink", {"target": "loop"}),
                                           ("up", "symlink", {"target": "../../../usr/bin/busybox"})]])
    assert tree.resolve("bin/sh")[0] == "usr/bin/busybox"
    assert tree.resolve("up")[0] == "usr/bin/busybox"  # '..' stops at the image root
    assert tree.resolve("loop") is None
    assert tree.resolve("bin/missing") is None


@pytest.mark.parametrize("pattern,matches", [
    ("/usr/share/doc/**", ["usr/share/doc/a", "usr/share/doc/a/b.txt", "usr/share/doc/c.gz"]),
    ("/usr/share/doc", ["usr/share/doc"]),
    ("/**/*.gz", ["usr/share/doc/c.gz", "x.gz"]),
    ("/usr/*/doc/?.gz", ["usr/share/doc/c.gz"]),
    ("/[ux]*", ["usr", "x.gz"]),
    ("/[!u]*", ["x.gz"]),
])
def test_glob_patterns(pattern, matches):
    candidates = ["usr", "usr/share", "usr/share/doc", "usr/share/doc/a", "usr/share/doc/a/b.txt", "usr/share/doc/c.gz", "x.gz"]
    regex = glob_regex(pattern)
    assert [c for c in candidates if regex.fullmatch(c)] == matches


def test_copy_is_independent(tmp_path, cache):
    tree = apply_layers(tmp_path, cache, [[("d/f", "file", {"data": b"1"})]])
    other = tree.copy()
    other.add(tree.entry("d").__class__("d/g", Kind.FILE, content=tree.entry("d/f").content))
    other.remove("d/f")
    assert paths(tree) == ["d", "d/f"] and paths(other) == ["d", "d/g"]


# ---------------------------------------------------------------- property test
NAMES = ["a", "b", "c"]
DIRS = ["", "a", "b", "a/b"]


def layer_strategy():
    path = st.builds(lambda d, n: f"{d}/{n}" if d else n, st.sampled_from(DIRS), st.sampled_from(NAMES))
    op = st.one_of(
        st.tuples(st.just("file"), path, st.binary(max_size=8)),
        st.tuples(st.just("dir"), path, st.integers(0o700, 0o777)),
        st.tuples(st.just("whiteout"), path, st.none()),
        st.tuples(st.just("opaque"), st.sampled_from(DIRS), st.none()),
        st.tuples(st.just("hardlink"), path, path),
        st.tuples(st.just("symlink"), path, st.sampled_from(["a", "/b", "../c"])),
    )
    return st.lists(op, max_size=8)


class Model:
    """The layer rules, written as plainly as possible: path -> (kind, value, inode id)."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[str, object, int]] = {}
        self.next_inode = 0

    def _drop(self, path: str) -> None:
        for p in [p for p in self.files if p == path or p.startswith(path + "/")]:
            del self.files[p]

    def apply(self, ops) -> bool:
        """False if the layer is invalid (a hard link to nothing or to a directory)."""
        for kind, path, arg in ops:  # whiteouts first, against the lower layers only
            if kind == "whiteout":
                self._drop(path)
            elif kind == "opaque":
                for p in [p for p in self.files if path == "" or p.startswith(path + "/")]:
                    del self.files[p]
        for kind, path, arg in ops:
            if kind in ("whiteout", "opaque"):
                continue
            parts = path.split("/")
            for i in range(1, len(parts)):
                parent = "/".join(parts[:i])
                if self.files.get(parent, ("",))[0] != "dir":
                    self._drop(parent)
                    self.files[parent] = ("dir", 0o755, -1)
            if kind == "hardlink":
                target = self.files.get(arg)
                if target is None or target[0] == "dir":
                    return False
                if arg != path:
                    self._drop(path)
                self.files[path] = target
                continue
            old = self.files.get(path)
            if kind == "dir" and old is not None and old[0] == "dir":
                self.files[path] = ("dir", arg, -1)
                continue
            self._drop(path)
            self.next_inode += 1
            self.files[path] = (kind, arg, self.next_inode if kind != "dir" else -1)
        return True


def to_members(ops) -> list[tuple[str, str, dict]]:
    out = []
    for kind, path, arg in ops:
        if kind == "file":
            out.append((path, "file", {"data": arg}))
        elif kind == "dir":
            out.append((path, "dir", {"mode": arg}))
        elif kind == "whiteout":
            parent, _, name = path.rpartition("/")
            out.append((f"{parent}/.wh.{name}" if parent else f".wh.{name}", "file", {}))
        elif kind == "opaque":
            out.append((f"{path}/.wh..wh..opq" if path else ".wh..wh..opq", "file", {}))
        elif kind == "hardlink":
            out.append((path, "hardlink", {"target": arg}))
        else:
            out.append((path, "symlink", {"target": arg}))
    return out


def observed(tree: RootfsTree) -> dict[str, tuple[str, object]]:
    out: dict[str, tuple[str, object]] = {}
    for path, node in tree.walk():
        if not path:
            continue
        e = node.entry
        if e.kind is Kind.FILE:
            with e.content.open() as fh:
                out[path] = ("file", fh.read())
        elif e.kind is Kind.DIR:
            out[path] = ("dir", e.mode)
        else:
            out[path] = ("symlink", e.target)
    return out


def link_groups(pairs) -> set[frozenset[str]]:
    groups: dict[object, set[str]] = {}
    for path, key in pairs:
        groups.setdefault(key, set()).add(path)
    return {frozenset(g) for g in groups.values() if len(g) > 1}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(layers=st.lists(layer_strategy(), min_size=1, max_size=4))
def test_random_layer_stacks_match_the_reference_model(tmp_path, layers):
    model = Model()
    valid = all(model.apply(ops) for ops in layers)
    with BlobCache(str(tmp_path)) as cache:
        if not valid:
            with pytest.raises(SourceError, match="hard link"):
                apply_layers(tmp_path, cache, [to_members(ops) for ops in layers])
            return
        tree = apply_layers(tmp_path, cache, [to_members(ops) for ops in layers])
        want = {p: (k, v) for p, (k, v, _) in model.files.items()}
        assert observed(tree) == want
        # hard-link structure: the same groups of names share one inode
        assert link_groups((p, id(n)) for p, n in tree.walk() if p and n.entry.kind is not Kind.DIR) == \
            link_groups((p, i) for p, (k, _, i) in model.files.items() if k != "dir")
