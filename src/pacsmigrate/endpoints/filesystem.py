"""A folder of DICOM files (or a DICOMDIR) as a read-only source: ``file:///path``.

Nothing here writes to the folder. Headers are read with pydicom up to the
pixel data (``stop_before_pixels``; large values deferred), so no image is
ever loaded; the pixel data element is then checked for completeness by
walking its header and, when encapsulated, its item headers only.

When the folder holds a ``DICOMDIR`` (or the URL names one), only the files
it references are read, as a DICOMDIR-based media reader would.
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlsplit

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.fileset import FileSet
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ImplicitVRLittleEndian,
    MediaStorageDirectoryStorage,
)

from pacsmigrate.endpoints.base import Capabilities, InstanceSink, RetrieveResult, StoreSession
from pacsmigrate.errors import ConfigError, PeerUnreachable

__all__ = ["FileHeader", "FolderEndpoint", "parse_file_url"]

LOGGER = logging.getLogger(__name__)

_DEFER = 64 * 1024  # values larger than this stay on disk (EncapsulatedDocument, overlays...)
_ITEM, _SEQ_END = 0xFFFEE000, 0xFFFEE0DD
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR"}
_LONG_VRS |= {b"UT", b"UV"}


def parse_file_url(url: str) -> Path:
    """``file:///abs/path`` -> Path; the folder (or DICOMDIR) must exist."""
    parts = urlsplit(url)
    if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
        raise ConfigError(f"folder URL {url!r} must look like file:///absolute/path")
    path = Path(unquote(parts.path))
    if not path.is_absolute():
        raise ConfigError(f"folder URL {url!r} must hold an absolute path (file:///...)")
    return path


@dataclass
class FileHeader:
    """One file as read: its header, or why it has none (``problem`` is a finding kind)."""

    path: Path
    size: int
    dataset: Dataset | None = None
    problem: str = ""  # "not_dicom" | "unreadable_file"
    detail: str = ""
    directory: bool = False  # a DICOMDIR met in a tree: an index, not an instance


class FolderEndpoint:
    """Read-only: walks files; cannot answer queries, retrieve (yet) or store."""

    capabilities = Capabilities(
        can_query=False, can_retrieve=False, can_store=False, can_delete=False
    )

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def label(self) -> str:
        return str(self.root)

    def echo(self) -> None:
        if not self.root.exists():
            raise PeerUnreachable(
                f"folder source {self.root} does not exist: check source.url (file:///path)"
            )
        if not os.access(self.root, os.R_OK):
            raise PeerUnreachable(f"folder source {self.root} is not readable by this user")

    # -- walking -----------------------------------------------------------

    def dicomdir(self) -> Path | None:
        if self.root.is_file() and self.root.name.upper() == "DICOMDIR":
            return self.root
        candidate = self.root / "DICOMDIR"
        return candidate if candidate.is_file() else None

    def files(self) -> Iterator[Path]:
        """Every file to read, in a stable order."""
        self.echo()
        dicomdir = self.dicomdir()
        if dicomdir is not None:
            yield from _dicomdir_files(dicomdir)
            return
        for folder, subfolders, names in os.walk(self.root, onerror=_walk_error):
            subfolders.sort()
            for name in sorted(names):
                yield Path(folder) / name

    def read(self, path: Path) -> FileHeader:
        """Read one file's header (never its pixel data)."""
        try:
            size = path.stat().st_size
            with path.open("rb") as fp:
                return _read_header(fp, path, size)
        except OSError as exc:
            return FileHeader(path, 0, problem="unreadable_file", detail=f"cannot open: {exc}")

    # -- the rest of the Endpoint protocol ---------------------------------

    def find(self, identifier: Dataset) -> Iterator[Dataset]:
        raise ConfigError(_NOT_QUERYABLE)

    def query_session(self) -> AbstractContextManager[Callable[[Dataset], Iterator[Dataset]]]:
        raise ConfigError(_NOT_QUERYABLE)

    def retrieve(
        self, identifier: Dataset, sink: InstanceSink, sop_classes: Sequence[str]
    ) -> RetrieveResult:
        raise ConfigError(_NOT_YET)

    def store_session(
        self, contexts: list[tuple[str, str]]
    ) -> AbstractContextManager[StoreSession]:
        raise ConfigError("a file:// endpoint is read-only: it can only be a source")


_NOT_QUERYABLE = "a file:// source is walked, not queried: inventory reads the files"
_NOT_YET = (
    "this version inventories and assesses file:// sources but does not migrate from them yet"
)


def _walk_error(exc: OSError) -> None:
    LOGGER.warning("cannot list a folder: %s", exc)


def _dicomdir_files(dicomdir: Path) -> Iterator[Path]:
    try:
        fileset = FileSet(dcmread(dicomdir))
    except Exception as exc:
        raise ConfigError(f"cannot read the DICOMDIR {dicomdir}: {exc}") from exc
    for instance in fileset:
        yield Path(instance.path)


def _read_header(fp: BinaryIO, path: Path, size: int) -> FileHeader:
    if size == 0:
        return FileHeader(path, size, problem="not_dicom", detail="empty file")
    preamble = fp.read(132)
    fp.seek(0)
    part10 = len(preamble) == 132 and preamble[128:] == b"DICM"
    try:
        ds = dcmread(fp, stop_before_pixels=True, defer_size=_DEFER, force=not part10)
    except InvalidDicomError as exc:
        return FileHeader(path, size, problem="not_dicom", detail=str(exc)[:200])
    except Exception as exc:  # pydicom raises many kinds on damaged data
        kind = "unreadable_file" if part10 else "not_dicom"
        return FileHeader(path, size, problem=kind, detail=f"{type(exc).__name__}: {exc}"[:200])
    header = _classify(ds, path, size, part10)
    if header.dataset is not None and (short := _pixel_data_short(fp, ds, size)):
        header.problem, header.detail = "unreadable_file", short
    return header


def _classify(ds: Dataset, path: Path, size: int, part10: bool) -> FileHeader:
    """A parsed file: an instance, a DICOMDIR met in a tree, or not DICOM after all."""
    meta = getattr(ds, "file_meta", None)
    if meta is not None and meta.get("MediaStorageSOPClassUID") == MediaStorageDirectoryStorage:
        return FileHeader(path, size, directory=True)
    if not part10 and not _looks_like_dicom(ds):
        return FileHeader(path, size, problem="not_dicom", detail="no DICM prefix, no DICOM UIDs")
    return FileHeader(path, size, ds)


def _looks_like_dicom(ds: Dataset) -> bool:
    """A file without the Part 10 prefix: a bare data set is DICOM if it names itself."""
    try:
        return bool(ds.get("SOPInstanceUID") or ds.get("StudyInstanceUID"))
    except Exception:
        return False


def _syntax(ds: Dataset) -> tuple[bool, bool] | None:
    """(little endian, implicit VR) of the data set, or None when it cannot be walked."""
    meta = getattr(ds, "file_meta", None)
    uid = meta.get("TransferSyntaxUID") if meta is not None else None
    if uid is None:
        return (ds.is_little_endian is not False, bool(ds.is_implicit_VR))
    if uid == DeflatedExplicitVRLittleEndian:
        return None
    return (uid != ExplicitVRBigEndian, uid == ImplicitVRLittleEndian)


def _pixel_data_short(fp: BinaryIO, ds: Dataset, size: int) -> str:
    """Why the pixel data element runs past the end of the file, or ""."""
    syntax = _syntax(ds)
    start = fp.tell()
    if syntax is None:
        return ""
    if size - start < 8:
        # pydicom stops quietly at a partial element header at the end of a file
        return _image_without_pixels(ds)
    little, implicit = syntax
    order = "<" if little else ">"
    header = fp.read(8)
    if len(header) < 8:
        return f"file ends {size - start} bytes into the pixel data element header"
    if implicit:
        length = struct.unpack(order + "L", header[4:8])[0]
    elif header[4:6] in _LONG_VRS:
        more = fp.read(4)
        if len(more) < 4:
            return "file ends inside the pixel data element header"
        length = struct.unpack(order + "L", more)[0]
    else:
        length = struct.unpack(order + "H", header[6:8])[0]
    if length == 0xFFFFFFFF:
        return _fragments_short(fp, order, size)
    missing = fp.tell() + length - size
    return f"pixel data declares {length} bytes, {missing} are missing" if missing > 0 else ""


def _image_without_pixels(ds: Dataset) -> str:
    """An image's header (Image Pixel module) with no pixel data after it: cut off."""
    if all(keyword in ds for keyword in ("Rows", "Columns", "BitsAllocated")):
        return "the file ends where the pixel data should begin"
    return ""


def _fragments_short(fp: BinaryIO, order: str, size: int) -> str:
    """Walk encapsulated items by their headers; the sequence must end in the file."""
    items = 0
    while True:
        header = fp.read(8)
        if len(header) < 8:
            return f"file ends after {items} pixel data fragments, before the end marker"
        group, element, length = struct.unpack(order + "HHL", header)
        tag = (group << 16) | element
        if tag == _SEQ_END:
            return ""
        if tag != _ITEM:
            return f"unexpected tag ({group:04X},{element:04X}) among pixel data fragments"
        overrun = fp.tell() + length - size
        if overrun > 0:
            return f"pixel data fragment {items + 1} runs {overrun} bytes past the end of the file"
        fp.seek(length, os.SEEK_CUR)
        items += 1
