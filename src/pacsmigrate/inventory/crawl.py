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
from datetime import date
from typing import Any, TypeVar

from pydicom.dataset import Dataset
from sqlalchemy.orm import Session

from pacsmigrate.endpoints.base import Endpoint
from pacsmigrate.errors import TransientError
from pacsmigrate.inventory.checks import Levels, check_dataset, text_of, uid_of
from pacsmigrate.inventory.slicing import SliceCrawler, answer
from pacsmigrate.ledger import repo
from pacsmigrate.ledger.db import Ledger
from pacsmigrate.ledger.findings import FindingKind, FindingsCollector
from pacsmigrate.ledger.models import Run, Series, Study
from pacsmigrate.ledger.states import StudyState

__all__ = ["InventoryOptions", "InventorySummary", "finish_inventory", "run_inventory"]

LOGGER = logging.getLogger(__name__)
Find = Callable[[Dataset], Iterator[Dataset]]
_T = TypeVar("_T")

# DICOM keyword -> ledger column (STYLE.md: one mapping table)
_STUDY_KEYS = {
    "PatientID": "patient_id",
    "PatientName": "patient_name",
    "PatientBirthDate": "patient_birth_date",
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
class InventoryOptions:
    find_cap: int = 0  # rows a source's query answer is capped at (0: unknown)
    earliest: date = date(1900, 1, 1)  # date bisection starts here
    full: bool = False  # query series and images of unchanged studies too
    today: date | None = None


@dataclass
class InventorySummary:
    studies: int = 0
    studies_new: int = 0
    studies_changed: int = 0
    studies_unchanged: int = 0
    series: int = 0
    instances: int = 0
    instances_new: int = 0
    queries: int = 0
    slices_split: int = 0
    files: int = 0
    findings: int = 0
    reopened: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        data = {key: value for key, value in vars(self).items() if key != "reopened"}
        data["studies_reopened"] = len(self.reopened)
        return data


def _query(level: str, keys: dict[str, str], **unique: str) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    ds.SpecificCharacterSet = "ISO_IR 192"
    for keyword, value in unique.items():
        setattr(ds, keyword, value)
    for keyword in keys:
        setattr(ds, keyword, "")
    return ds


def _fields(match: Dataset, keys: dict[str, str]) -> dict[str, str]:
    return {column: text_of(match, keyword) for keyword, column in keys.items()}


def _reported(match: Dataset) -> int | None:
    try:
        return int(match.get("NumberOfStudyRelatedInstances"))
    except (TypeError, ValueError):
        return None


class _QueryInventory:
    """Study -> series -> image C-FIND (or QIDO) crawl of one source into the ledger."""

    def __init__(
        self,
        session: Session,
        find: Find,
        summary: InventorySummary,
        findings: FindingsCollector,
        options: InventoryOptions,
    ) -> None:
        self.session = session
        self.find = find
        self.summary = summary
        self.findings = findings
        self.options = options

    def study(self, match: Dataset) -> FindingsCollector:
        """Record one study-level answer, crawl its series and images; returns its findings."""
        self.findings = FindingsCollector()
        self._study(match)
        return self.findings

    def _study(self, match: Dataset) -> None:
        check_dataset(match, Levels(study=True, text=True), self.findings)
        study_uid = uid_of(match, "StudyInstanceUID")
        fields: dict[str, Any] = _fields(match, _STUDY_KEYS)
        reported = fields["reported_instances"] = _reported(match)
        result = repo.upsert_study(self.session, study_uid, fields)
        study: Study = result.row
        self.summary.studies += 1
        self.summary.studies_new += int(result.created)
        self.summary.studies_changed += int(result.changed)
        known = repo.instance_count(self.session, study)
        if self._unchanged(result, reported, known):
            self.summary.studies_unchanged += 1
            self.summary.instances += known
            self._cross_check(study_uid, reported, known)
            return
        found, new = self._series_of(study)
        self.summary.instances_new += new
        self._cross_check(study_uid, reported, found)
        if new and not result.created and study.state in _REOPEN:
            repo.set_state(
                self.session, study, StudyState.QUEUED, f"{new} new instances found by inventory"
            )
            self.summary.reopened.append(study_uid)

    def _unchanged(self, result: repo.UpsertResult, reported: int | None, known: int) -> bool:
        """A study the ledger already holds whole: same fields, same instance count."""
        return (
            not self.options.full
            and not result.created
            and not result.changed
            and reported is not None
            and reported == known
            and known > 0
        )

    def _cross_check(self, study_uid: str, reported: int | None, found: int) -> None:
        if found == 0:
            self.findings.add(FindingKind.ZERO_IMAGE_STUDY, study_uid, study_uid=study_uid)
        elif reported is not None and reported != found:
            self.findings.add(
                FindingKind.INSTANCE_COUNT_MISMATCH,
                study_uid,
                f"source says {reported}, found {found}",
                study_uid=study_uid,
            )

    def _series_of(self, study: Study) -> tuple[int, int]:
        """Crawl the series and images of ``study``; returns (instances, new instances)."""
        query = _query(
            "SERIES", _SERIES_KEYS, StudyInstanceUID=study.study_uid, SeriesInstanceUID=""
        )
        found = new = 0
        rows = self._rows(query, f"series of study {study.study_uid}", study.study_uid)
        for match in self._unique(rows, "SeriesInstanceUID", study.study_uid):
            check_dataset(match, Levels(series=True), self.findings)
            series = repo.upsert_series(
                self.session,
                study,
                uid_of(match, "SeriesInstanceUID"),
                _fields(match, _SERIES_KEYS),
            ).row
            self.summary.series += 1
            count, created = self._images_of(study.study_uid, series)
            found += count
            new += created
        return found, new

    def _images_of(self, study_uid: str, series: Series) -> tuple[int, int]:
        query = _query(
            "IMAGE",
            _INSTANCE_KEYS,
            StudyInstanceUID=study_uid,
            SeriesInstanceUID=series.series_uid,
            SOPInstanceUID="",
        )
        rows = self._rows(query, f"images of series {series.series_uid}", study_uid)
        found = new = 0
        for image in self._unique(rows, "SOPInstanceUID", study_uid):
            check_dataset(image, Levels(image=True), self.findings)
            created = repo.upsert_instance(
                self.session,
                series,
                uid_of(image, "SOPInstanceUID"),
                _fields(image, _INSTANCE_KEYS),
            ).created
            found += 1
            new += int(created)
        self.summary.instances += found
        return found, new

    def _rows(self, query: Dataset, what: str, study_uid: str) -> list[Dataset]:
        """A series- or image-level answer; one cut short cannot be split: a finding."""
        rows, truncated = answer(self.find, query)
        capped = bool(self.options.find_cap) and len(rows) >= self.options.find_cap
        if truncated or capped:
            why = "cut short by the source" if truncated else "the configured cap"
            self.findings.add(
                FindingKind.SLICE_TRUNCATED,
                what,
                f"{len(rows)} rows, {why}; this level cannot be split further",
                study_uid=study_uid,
            )
        return rows

    def _unique(self, rows: list[Dataset], keyword: str, study_uid: str) -> Iterator[Dataset]:
        """Rows with a UID, each UID once; repeats become a duplicate_rows finding."""
        seen: set[str] = set()
        for row in rows:
            uid = uid_of(row, keyword)
            if not uid:
                levels = Levels(image=True) if keyword == "SOPInstanceUID" else Levels(series=True)
                where = f"{keyword} missing in an answer for study {study_uid}"
                check_dataset(row, levels, self.findings, where=where)
                continue
            if uid in seen:
                self.findings.add(FindingKind.DUPLICATE_ROWS, study_uid, study_uid=study_uid)
                continue
            seen.add(uid)
            yield row


def _with_retry(
    session: Session,
    summary: InventorySummary,
    work: Callable[[], _T],
    attempts: int = 3,
) -> _T:
    """Run one study's queries again after an aborted or timed-out C-FIND (bounded)."""
    for attempt in range(1, attempts + 1):
        before = copy.deepcopy(summary)
        try:
            return work()
        except TransientError:
            session.rollback()
            summary.__dict__.update(before.__dict__)
            if attempt == attempts:
                raise
            LOGGER.warning(
                "inventory query failed (attempt %d of %d); asking again", attempt, attempts
            )
            time.sleep(attempt)
    raise AssertionError("unreachable")


def run_inventory(
    source: Endpoint, ledger: Ledger, options: InventoryOptions | None = None
) -> InventorySummary:
    """Enumerate every study of ``source`` into the ledger; one transaction per study."""
    options = options or InventoryOptions()
    summary = InventorySummary()
    findings = FindingsCollector()
    with ledger.session() as session:
        run = repo.start_run(session, "inventory")
        session.commit()
        with source.query_session() as find:
            crawl = _QueryInventory(session, find, summary, findings, options)

            def on_study(match: Dataset) -> None:
                # the slice's answer is in memory: this association is free again
                findings.merge(_with_retry(session, summary, functools.partial(crawl.study, match)))
                session.commit()

            def ask(query: Dataset) -> tuple[list[Dataset], bool]:
                return _with_retry(session, summary, lambda: answer(find, query))

            slices = SliceCrawler(
                ask,
                _STUDY_KEYS,
                on_study,
                findings,
                cap=options.find_cap,
                earliest=options.earliest,
                today=options.today,
            )
            slices.run()
        summary.queries, summary.slices_split = slices.queries, slices.splits
        for sop_uid, studies in repo.sop_uids_in_several_studies(session):
            findings.set_count(
                FindingKind.SOP_UID_IN_TWO_PLACES, sop_uid, studies, f"in {studies} studies"
            )
        finish_inventory(session, run, summary, findings)
    LOGGER.info("inventory: %(studies)d studies, %(instances)d instances", summary.as_dict())
    return summary


def finish_inventory(
    session: Session, run: Run, summary: InventorySummary, findings: FindingsCollector
) -> None:
    """Replace the inventory's findings and close the run (one transaction)."""
    summary.findings = repo.replace_findings(session, "inventory", findings)
    repo.audit(session, "inventory", "completed", **summary.as_dict())
    repo.finish_run(session, run, "completed", summary.as_dict())
    session.commit()
