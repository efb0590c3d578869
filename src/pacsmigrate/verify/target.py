"""Verify: the target must hold every expected SOP Instance UID (FIELD-NOTES 16).

Counts in C-FIND are not trusted; the target is asked, series by series, at
IMAGE level, and the sets are compared. A study whose instances are all
present becomes ``verified``; one with missing instances goes back to
``queued`` (so the next ``migrate`` sends them) with the count as reason.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from pydicom.dataset import Dataset
from sqlalchemy import select
from sqlalchemy.orm import Session

from pacsmigrate.endpoints.base import Endpoint
from pacsmigrate.errors import TransientError
from pacsmigrate.ledger import repo
from pacsmigrate.ledger.db import Ledger
from pacsmigrate.ledger.models import Study
from pacsmigrate.ledger.states import StudyState

__all__ = ["VerifySummary", "run_verify", "target_sop_uids"]

LOGGER = logging.getLogger(__name__)
Find = Callable[[Dataset], Iterator[Dataset]]


@dataclass
class VerifySummary:
    verified: int = 0
    incomplete: int = 0
    missing_instances: int = 0
    incomplete_studies: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, int]:
        return {
            "verified": self.verified,
            "incomplete": self.incomplete,
            "missing_instances": self.missing_instances,
        }


def _query(level: str, **keys: str) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


def target_sop_uids(find: Find, study_uid: str) -> set[str]:
    """Every SOP Instance UID the target holds for ``study_uid``."""
    found: set[str] = set()
    series_query = _query("SERIES", StudyInstanceUID=study_uid, SeriesInstanceUID="")
    for series in list(find(series_query)):
        series_uid = str(series.get("SeriesInstanceUID", "") or "")
        if not series_uid:
            continue
        image_query = _query(
            "IMAGE", StudyInstanceUID=study_uid, SeriesInstanceUID=series_uid, SOPInstanceUID=""
        )
        for image in find(image_query):
            sop_uid = str(image.get("SOPInstanceUID", "") or "")
            if sop_uid:
                found.add(sop_uid)
    return found


def run_verify(target: Endpoint, ledger: Ledger, *, recheck: bool = False) -> VerifySummary:
    """Check every ``transferred`` study (and ``verified`` ones with ``recheck``)."""
    states = [StudyState.TRANSFERRED.value] + ([StudyState.VERIFIED.value] if recheck else [])
    summary = VerifySummary()
    with ledger.session() as session:
        run = repo.start_run(session, "verify")
        session.commit()
        ids = list(
            session.scalars(select(Study.id).where(Study.state.in_(states)).order_by(Study.id))
        )
        with target.query_session() as find:
            for study_id in ids:
                _verify_study(session, find, session.get_one(Study, study_id), summary)
        repo.finish_run(session, run, "completed", summary.as_dict())
        session.commit()
    return summary


def _present_with_retry(find: Find, study_uid: str, attempts: int = 3) -> set[str]:
    """The target's SOP UIDs; an aborted or timed-out query is asked again (bounded)."""
    for attempt in range(1, attempts + 1):
        try:
            return target_sop_uids(find, study_uid)
        except TransientError:
            if attempt == attempts:
                raise
            LOGGER.warning(
                "verify query failed (attempt %d of %d); asking again", attempt, attempts
            )
            time.sleep(attempt)
    raise AssertionError("unreachable")


def _verify_study(session: Session, find: Find, study: Study, summary: VerifySummary) -> None:
    present = _present_with_retry(find, study.study_uid)
    missing = repo.mark_missing(session, study, present)
    if missing:
        reason = f"{missing} instances missing on the target at verify; queued to send again"
        repo.set_state(session, study, StudyState.QUEUED, reason)
        summary.incomplete += 1
        summary.missing_instances += missing
        summary.incomplete_studies.append(study.study_uid)
    elif study.state != StudyState.VERIFIED.value:
        repo.set_state(session, study, StudyState.VERIFIED)
        summary.verified += 1
    repo.audit(session, "verify", "checked", study.study_uid, present=len(present), missing=missing)
    session.commit()
