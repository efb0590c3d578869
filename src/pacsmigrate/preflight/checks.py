"""Preflight: prove both ends answer and that the source can send to us.

C-ECHO both ends, then C-MOVE one known instance to our own Storage SCP (or
C-GET it, for a source set to ``retrieve=get``). A
source that does not know our AE title answers 0xA801 (or, like Orthanc 1.10,
a failure with nothing sent); that is a configuration error with the exact
AE title, host and port to register on the source, never a retry.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pydicom.dataset import Dataset

from pacsmigrate.endpoints.base import Endpoint
from pacsmigrate.endpoints.status import SUCCESS, describe
from pacsmigrate.endpoints.storescp import StorageSCP
from pacsmigrate.errors import MoveDestinationUnknown, ProtocolError
from pacsmigrate.transfer.spool import StudySpool

__all__ = ["PreflightResult", "run_preflight"]

LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreflightResult:
    source: str
    target: str
    probe_study_uid: str
    probe_received: bool


def _first(source: Endpoint, level: str, key: str, **unique: str) -> Dataset | None:
    query = Dataset()
    query.QueryRetrieveLevel = level
    for keyword, value in unique.items():
        setattr(query, keyword, value)
    setattr(query, key, "")
    if level == "IMAGE":
        query.SOPClassUID = ""
    for match in source.find(query):
        if match.get(key):
            return match
    return None


def _known_instance(source: Endpoint) -> Dataset | None:
    study = _first(source, "STUDY", "StudyInstanceUID")
    if study is None:
        return None
    study_uid = str(study.StudyInstanceUID)
    series = _first(source, "SERIES", "SeriesInstanceUID", StudyInstanceUID=study_uid)
    if series is None:
        return None
    return _first(
        source,
        "IMAGE",
        "SOPInstanceUID",
        StudyInstanceUID=study_uid,
        SeriesInstanceUID=str(series.SeriesInstanceUID),
    )


def _image_identifier(image: Dataset) -> Dataset:
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "IMAGE"
    identifier.StudyInstanceUID = image.StudyInstanceUID
    identifier.SeriesInstanceUID = image.SeriesInstanceUID
    identifier.SOPInstanceUID = image.SOPInstanceUID
    return identifier


def _register_hint(scp: StorageSCP) -> str:
    host = scp.host if scp.host not in {"0.0.0.0", "::", ""} else "this machine's address"
    return (
        f"register AE title {scp.ae_title!r} at host {host}, port {scp.port} as a move"
        " destination on the source (or fix local.ae_title, local.host, local.port)"
    )


def _probe_move(source: Endpoint, scp: StorageSCP, image: Dataset, quiet: float) -> bool:
    identifier = _image_identifier(image)
    sop_uid = str(image.SOPInstanceUID)
    with tempfile.TemporaryDirectory(dir=scp.spool_dir) as folder:
        spool = StudySpool(Path(folder) / "probe", [sop_uid])
        with scp.route(str(image.StudyInstanceUID), [sop_uid], spool.sink):
            try:
                result = source.retrieve(identifier, spool.sink, [])
            except MoveDestinationUnknown as exc:
                raise MoveDestinationUnknown(f"{exc}: {_register_hint(scp)}") from exc
            missing = spool.missing() if result.nothing_sent else spool.wait_complete(quiet)
        if not missing:
            return True
    if result.status != SUCCESS and result.completed == 0:
        comment = f", {result.error_comment}" if result.error_comment else ""
        raise MoveDestinationUnknown(
            f"{source.label} refused to C-MOVE one instance to {scp.ae_title!r}"
            f" ({describe(result.status)}{comment})."
            f" Most often the source does not know our AE: {_register_hint(scp)}"
        )
    raise ProtocolError(
        f"{source.label} answered the probe C-MOVE with {describe(result.status)} but the"
        f" instance never reached {scp.ae_title!r} at {scp.host}:{scp.port}: check that the"
        " source can open a connection to that address (firewall, NAT)"
    )


def _probe_get(source: Endpoint, image: Dataset, spool_root: Path) -> bool:
    identifier = _image_identifier(image)
    sop_class = str(image.get("SOPClassUID", "") or "")
    spool_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=spool_root) as folder:
        spool = StudySpool(Path(folder) / "probe", [str(image.SOPInstanceUID)])
        result = source.retrieve(identifier, spool.sink, [sop_class] if sop_class else [])
        if not spool.missing():
            return True
    raise ProtocolError(
        f"{source.label} answered the probe C-GET with {describe(result.status)} and sent"
        " nothing: check that it supports C-GET, or use retrieve=move"
    )


def run_preflight(
    source: Endpoint,
    target: Endpoint,
    scp: StorageSCP | None,
    *,
    spool_root: Path,
    quiet: float = 10.0,
) -> PreflightResult:
    """Raise a :class:`~pacsmigrate.errors.PacsmigrateError` on the first failed check."""
    source.echo()
    target.echo()
    image = _known_instance(source)
    received = False
    if image is not None:
        received = (
            _probe_move(source, scp, image, quiet)
            if scp is not None
            else _probe_get(source, image, spool_root)
        )
    return PreflightResult(
        source=source.label,
        target=target.label,
        probe_study_uid=str(image.StudyInstanceUID) if image is not None else "",
        probe_received=received,
    )
