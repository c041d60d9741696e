"""Pure-Python squashfs 4.0 engine: reproducible writer, random-access reader, physical layout."""

from .errors import SquashfsError
from .reader import BlockLocation, DirEntry, FileLayout, ImageLayout, Inode, SquashfsImage, TableLayout
from .tree import BytesContent, Content, Entry, FileContent, Kind, SliceContent, Tree
from .walker import walk_directory
from .writer import WriteResult, WriterOptions, parse_block_size, write_image

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
