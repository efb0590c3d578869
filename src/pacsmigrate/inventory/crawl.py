"""Inventory: enumerate the source (C-FIND study -> series -> image) into the ledger.

Re-running is safe: rows are upserted by UID, nothing found before is
forgotten, and a study that gains instances after it was migrated goes back to
``queued`` so the next ``migrate`` sends what is new.
"""

from __future__ import annotations

import copy
import functools
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pydicom.dataset import Dataset
from sqlalchemy.orm import Session

from pacsmigrate.endpoints.base import Endpoint
from pacsmigrate.errors import TransientError
from pacsmigrate.ledger import repo
from pacsmigrate.ledger.db import Ledger
from pacsmigrate.ledger.models import Study
from pacsmigrate.ledger.states import StudyState

__all__ = ["InventorySummary", "run_inventory"]

LOGGER = logging.getLogger(__name__)
Find = Callable[[Dataset], Iterator[Dataset]]

# DICOM keyword -> ledger column (STYLE.md: one mapping table)
_STUDY_KEYS = {
    "PatientID": "patient_id",
    "PatientName": "patient_name",
    "StudyDate": "study_date",
    "AccessionNumber": "accession_number",
    "ModalitiesInStudy": "modalities",
    "StudyDescription": "description",
}
_SERIES_KEYS = {
    "Modality": "modality",
    "SeriesNumber": "series_number",
    "SeriesDescription": "description",
}
_INSTANCE_KEYS = {"SOPClassUID": "sop_class_uid", "InstanceNumber": "instance_number"}
_REOPEN = {StudyState.TRANSFERRED.value, StudyState.VERIFIED.value}


@dataclass
class InventorySummary:
    studies: int = 0
    studies_new: int = 0
    series: int = 0
    instances: int = 0
    instances_new: int = 0
    reopened: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "studies": self.studies,
            "studies_new": self.studies_new,
            "series": self.series,
            "instances": self.instances,
            "instances_new": self.instances_new,
            "studies_reopened": len(self.reopened),
        }


def _query(level: str, keys: dict[str, str], **unique: str) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    ds.SpecificCharacterSet = "ISO_IR 192"
    for keyword, value in unique.items():
        setattr(ds, keyword, value)
    for keyword in keys:
        setattr(ds, keyword, "")
    return ds


def _value(match: Dataset, keyword: str) -> str:
    value = match.get(keyword)
    if value is None or value == "":
        return ""
    if keyword == "ModalitiesInStudy" and not isinstance(value, str):
        return "\\".join(str(item) for item in value)
    return str(value).strip()


def _fields(match: Dataset, keys: dict[str, str]) -> dict[str, str]:
    return {column: _value(match, keyword) for keyword, column in keys.items()}


def _study_matches(find: Find) -> Iterator[Dataset]:
    query = _query("STUDY", _STUDY_KEYS, StudyInstanceUID="")
    query.NumberOfStudyRelatedInstances = ""
    seen: set[str] = set()
    for match in find(query):
        uid = _value(match, "StudyInstanceUID")
        if uid and uid not in seen:  # sources repeat rows (FIELD-NOTES 2)
            seen.add(uid)
            yield match


def _reported(match: Dataset) -> int | None:
    try:
        return int(match.get("NumberOfStudyRelatedInstances"))
    except (TypeError, ValueError):
        return None


def _inventory_study(
    session: Session, find: Find, match: Dataset, summary: InventorySummary
) -> None:
    study_uid = _value(match, "StudyInstanceUID")
    fields: dict[str, Any] = _fields(match, _STUDY_KEYS)
    fields["reported_instances"] = _reported(match)
    result = repo.upsert_study(session, study_uid, fields)
    study: Study = result.row
    summary.studies += 1
    summary.studies_new += int(result.created)
    new_instances = 0
    for series_match in list(
        find(_query("SERIES", _SERIES_KEYS, StudyInstanceUID=study_uid, SeriesInstanceUID=""))
    ):
        series_uid = _value(series_match, "SeriesInstanceUID")
        if not series_uid:
            continue
        series = repo.upsert_series(
            session, study, series_uid, _fields(series_match, _SERIES_KEYS)
        ).row
        summary.series += 1
        image_query = _query(
            "IMAGE",
            _INSTANCE_KEYS,
            StudyInstanceUID=study_uid,
            SeriesInstanceUID=series_uid,
            SOPInstanceUID="",
        )
        for image in find(image_query):
            sop_uid = _value(image, "SOPInstanceUID")
            if not sop_uid:
                continue
            created = repo.upsert_instance(
                session, series, sop_uid, _fields(image, _INSTANCE_KEYS)
            ).created
            summary.instances += 1
            new_instances += int(created)
    summary.instances_new += new_instances
    if new_instances and not result.created and study.state in _REOPEN:
        repo.set_state(
            session, study, StudyState.QUEUED, f"{new_instances} new instances found by inventory"
        )
        summary.reopened.append(study_uid)


def _with_retry(
    session: Session, summary: InventorySummary, work: Callable[[], None], attempts: int = 3
) -> None:
    """Run one study's queries again after an aborted or timed-out C-FIND (bounded)."""
    for attempt in range(1, attempts + 1):
        before = copy.deepcopy(summary)
        try:
            work()
            return
        except TransientError:
            session.rollback()
            summary.__dict__.update(before.__dict__)
            if attempt == attempts:
                raise
            LOGGER.warning(
                "inventory query failed (attempt %d of %d); asking again", attempt, attempts
            )
            time.sleep(attempt)


def run_inventory(source: Endpoint, ledger: Ledger) -> InventorySummary:
    """Enumerate every study of ``source`` into the ledger; one transaction per study."""
    summary = InventorySummary()
    with ledger.session() as session:
        run = repo.start_run(session, "inventory")
        session.commit()
        with source.query_session() as find:
            # Materialise the study list first: one association carries one
            # query at a time, and the series and image queries come next.
            for match in list(_study_matches(find)):
                work = functools.partial(_inventory_study, session, find, match, summary)
                _with_retry(session, summary, work)
                session.commit()
        repo.audit(session, "inventory", "completed", **summary.as_dict())
        repo.finish_run(session, run, "completed", summary.as_dict())
        session.commit()
    LOGGER.info("inventory: %(studies)d studies, %(instances)d instances", summary.as_dict())
    return summary
