"""The spool: received instances on disk, exactly as received, hashed and durable.

The Storage SCP (or the C-GET handler) hands each received file to
:meth:`StudySpool.sink`, which renames it into the study's folder, computes
the SHA-256 of the data set bytes as received (after the File Meta header that
pynetdicom writes), fsyncs, and only then answers success (FIELD-NOTES 12).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pynetdicom.dsutils import split_dataset

from pacsmigrate.endpoints.base import ReceivedInstance
from pacsmigrate.endpoints.status import OUT_OF_RESOURCES, SUCCESS

__all__ = ["SpooledInstance", "StudySpool", "hash_dataset"]

_CHUNK = 1 << 20


@dataclass(frozen=True)
class SpooledInstance:
    path: Path
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    size: int
    sha256: str


def hash_dataset(path: Path) -> tuple[int, str]:
    """Size and SHA-256 of the data set bytes (the part after the File Meta header),
    read in chunks; the file is fsynced on the way."""
    _meta, offset = split_dataset(path)
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as fp:
        fp.seek(offset)
        while chunk := fp.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
        os.fsync(fp.fileno())
    return size, digest.hexdigest()


class StudySpool:
    """Collects one study's received instances; thread-safe (SCP threads call :meth:`sink`)."""

    def __init__(self, folder: Path, expected: Iterable[str]) -> None:
        self.folder = folder
        self.expected = set(expected)
        self.received: dict[str, SpooledInstance] = {}
        self._cond = threading.Condition()
        self._last_arrival = time.monotonic()
        folder.mkdir(parents=True, exist_ok=True)

    def sink(self, received: ReceivedInstance) -> int:
        destination = self.folder / f"{received.sop_instance_uid}.dcm"
        try:
            shutil.move(received.path, destination)
            size, sha256 = hash_dataset(destination)
        except OSError:
            return OUT_OF_RESOURCES  # disk full or unwritable: the peer may retry
        spooled = SpooledInstance(
            path=destination,
            sop_class_uid=received.sop_class_uid,
            sop_instance_uid=received.sop_instance_uid,
            transfer_syntax_uid=received.transfer_syntax_uid,
            size=size,
            sha256=sha256,
        )
        with self._cond:
            self.received[received.sop_instance_uid] = spooled
            self._last_arrival = time.monotonic()
            self._cond.notify_all()
        return SUCCESS

    def missing(self) -> set[str]:
        with self._cond:
            return self.expected - set(self.received)

    def wait_complete(self, quiet_period: float) -> set[str]:
        """Wait until every expected instance arrived, or nothing arrived for
        ``quiet_period`` seconds (asynchronous C-MOVE SCPs, FIELD-NOTES 5).
        Return the SOP Instance UIDs still missing."""
        with self._cond:
            while True:
                missing = self.expected - set(self.received)
                idle = time.monotonic() - self._last_arrival
                if not missing or idle >= quiet_period:
                    return missing
                self._cond.wait(timeout=quiet_period - idle)

    def discard(self, keep: Iterable[str] = ()) -> None:
        """Remove spooled files except ``keep`` (SOP Instance UIDs); remove the folder if empty."""
        kept = set(keep)
        for sop_uid, spooled in list(self.received.items()):
            if sop_uid not in kept:
                spooled.path.unlink(missing_ok=True)
        if self.folder.exists() and not any(self.folder.iterdir()):
            self.folder.rmdir()

    def reset(self) -> None:
        """Start a new attempt: forget and delete what an earlier attempt left here."""
        if self.folder.exists():
            shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True)
        with self._cond:
            self.received.clear()
            self._last_arrival = time.monotonic()
