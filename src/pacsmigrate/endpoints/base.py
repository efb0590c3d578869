"""The endpoint protocol and endpoint URLs.

An endpoint is named by URL (DESIGN.md):

- ``dimse://CALLED_AE@host:port?calling=AE&retrieve=move|get``

Endpoints declare what they can do with capability flags; stages check the
flags instead of the class.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable
from urllib.parse import parse_qs, urlsplit

from pydicom.dataset import Dataset

from pacsmigrate.errors import ConfigError

__all__ = [
    "Capabilities",
    "DimseAddress",
    "Endpoint",
    "ReceivedInstance",
    "RetrieveResult",
    "StoreSession",
    "TruncatedAnswer",
    "parse_dimse_url",
]

_AE_RE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # printable ASCII except backslash


class TruncatedAnswer(Exception):  # noqa: N818 - it is an event, not a bug
    """A query answer the peer cut short (a cancel status, or a failure after matches).

    Raised by ``find`` after the matches it did yield; the inventory keeps those
    and splits the query, as it does for an answer that reaches the cap.
    """


@dataclass(frozen=True)
class Capabilities:
    can_query: bool
    can_retrieve: bool
    can_store: bool
    can_delete: bool


@dataclass(frozen=True)
class ReceivedInstance:
    """One instance as received: its raw bytes are in a DICOM file at ``path``."""

    path: Path
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str


#: Called for each received instance; returns the DIMSE status to answer with.
InstanceSink = Callable[[ReceivedInstance], int]


@dataclass(frozen=True)
class RetrieveResult:
    """The final response of a C-MOVE or C-GET."""

    status: int
    completed: int
    failed: int
    warning: int
    error_comment: str = ""

    @property
    def nothing_sent(self) -> bool:
        """A failure status with no sub-operation done: no instance is on its way."""
        failed_status = (self.status & 0xF000) in (0xA000, 0xC000)
        return failed_status and self.completed == 0 and self.warning == 0


class StoreSession(Protocol):
    def store(self, path: Path, sop_class_uid: str, transfer_syntax_uid: str) -> int:
        """Send one Part 10 file's raw dataset; return the peer's DIMSE status."""
        ...


@runtime_checkable
class Endpoint(Protocol):
    """What the stages need from a source or a target."""

    capabilities: Capabilities

    @property
    def label(self) -> str: ...

    def echo(self) -> None: ...

    def find(self, identifier: Dataset) -> Iterator[Dataset]: ...

    def query_session(self) -> AbstractContextManager[Callable[[Dataset], Iterator[Dataset]]]:
        """A ``find`` function that reuses one connection for many queries."""
        ...

    def retrieve(
        self,
        identifier: Dataset,
        sink: InstanceSink,
        sop_classes: Sequence[str],
    ) -> RetrieveResult:
        """Retrieve into ``sink``; ``sop_classes`` are those the inventory expects."""
        ...

    def store_session(
        self, contexts: list[tuple[str, str]]
    ) -> AbstractContextManager[StoreSession]: ...


@dataclass(frozen=True)
class DimseAddress:
    called_ae: str
    host: str
    port: int
    calling_ae: str
    retrieve: str = "move"

    @property
    def label(self) -> str:
        return f"{self.called_ae}@{self.host}:{self.port}"


def _check_ae(value: str, what: str, url: str) -> str:
    if not _AE_RE.match(value) or value.strip() != value:
        raise ConfigError(
            f"{what} {value!r} in {url!r} is not a valid AE title (1-16 printable ASCII"
            " characters, no backslash, no leading or trailing spaces)"
        )
    return value


def parse_dimse_url(url: str, default_calling_ae: str) -> DimseAddress:
    """Parse ``dimse://CALLED@host:port?calling=AE&retrieve=move|get``."""
    parts = urlsplit(url)
    if parts.scheme != "dimse":
        raise ConfigError(
            f"endpoint URL {url!r} has scheme {parts.scheme!r}; this version supports"
            " dimse://CALLED_AE@host:port (DICOMweb and folder endpoints come later)"
        )
    if not parts.username or not parts.hostname:
        raise ConfigError(
            f"endpoint URL {url!r} needs the called AE title and host: dimse://CALLED_AE@host:port"
        )
    try:
        port = parts.port or 104
    except ValueError as exc:
        raise ConfigError(f"endpoint URL {url!r} has an invalid port") from exc
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    unknown = sorted(set(query) - {"calling", "retrieve"})
    if unknown:
        raise ConfigError(
            f"endpoint URL {url!r} has unknown parameter {unknown[0]!r};"
            " valid parameters: calling, retrieve"
        )
    retrieve = query.get("retrieve", "move")
    if retrieve not in {"move", "get"}:
        raise ConfigError(
            f"endpoint URL {url!r}: retrieve must be 'move' or 'get', not {retrieve!r}"
        )
    return DimseAddress(
        called_ae=_check_ae(parts.username, "called AE title", url),
        host=parts.hostname,
        port=port,
        calling_ae=_check_ae(query.get("calling", default_calling_ae), "calling AE title", url),
        retrieve=retrieve,
    )
