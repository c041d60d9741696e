"""Pure-Python squashfs 4.0 engine: reproducible writer, random-access reader, physical layout.

The names below load their submodule on first use (edge.lazy): a device applying a delta needs
the compressors, not the writer and the directory walker.
"""

from typing import TYPE_CHECKING

from edge.lazy import lazy_exports

if TYPE_CHECKING:
    from .errors import SquashfsError
    from .reader import BlockLocation, DirEntry, FileLayout, ImageLayout, Inode, SquashfsImage, TableLayout
    from .tree import BytesContent, Content, Entry, FileContent, Kind, SliceContent, Tree
    from .walker import walk_directory
    from .writer import WriteResult, WriterOptions, parse_block_size, write_image

_EXPORTS = {
    "SquashfsError": ".errors",
    **dict.fromkeys(["BlockLocation", "DirEntry", "FileLayout", "ImageLayout", "Inode", "SquashfsImage", "TableLayout"],
                    ".reader"),
    **dict.fromkeys(["BytesContent", "Content", "Entry", "FileContent", "Kind", "SliceContent", "Tree"], ".tree"),
    "walk_directory": ".walker",
    **dict.fromkeys(["WriteResult", "WriterOptions", "parse_block_size", "write_image"], ".writer"),
}
__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)

__all__ = [
    "BlockLocation",
    "BytesContent",
    "Content",
    "DirEntry",
    "Entry",
    "FileContent",
    "FileLayout",
    "ImageLayout",
    "Inode",
    "Kind",
    "SliceContent",
    "SquashfsError",
    "SquashfsImage",
    "TableLayout",
    "Tree",
    "WriteResult",
    "WriterOptions",
    "parse_block_size",
    "walk_directory",
    "write_image",
]
