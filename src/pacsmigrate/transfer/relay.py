"""Relay one study: retrieve -> spool -> store -> record (DESIGN.md, "Data path").

Every instance's outcome is written to the ledger as it happens, so a crash at
any point loses nothing: a re-run sends only what the target has not
acknowledged (the target keeps one copy per SOP Instance UID).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pydicom.dataset import Dataset
from sqlalchemy.orm import Session

from pacsmigrate.endpoints.base import Endpoint, StoreSession
from pacsmigrate.endpoints.dimse import MAX_CONTEXTS
from pacsmigrate.endpoints.status import describe, is_success_or_warning
from pacsmigrate.endpoints.storescp import StorageSCP
from pacsmigrate.errors import ContextRefused, TransientError
from pacsmigrate.ledger import repo
from pacsmigrate.ledger.db import Ledger
from pacsmigrate.ledger.models import Instance, Study, utcnow
from pacsmigrate.ledger.states import StudyState
from pacsmigrate.transfer.spool import SpooledInstance, StudySpool

__all__ = ["RelayContext", "migrate_study"]

LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class RelayContext:
    source: Endpoint
    target: Endpoint
    scp: StorageSCP | None
    ledger: Ledger
    spool_dir: Path
    quiet_period: float = 20.0


def _identifier(level: str, **keys: str | list[str]) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


def _retrieve(ctx: RelayContext, study: Study, expected: list[Instance], spool: StudySpool) -> None:
    """Study-level retrieve, then image-level retrieves for what did not arrive."""
    sop_classes = sorted({i.sop_class_uid for i in expected if i.sop_class_uid})

    def attempt(identifier: Dataset) -> None:
        if ctx.scp is not None:
            with ctx.scp.route(study.study_uid, spool.expected, spool.sink):
                result = ctx.source.retrieve(identifier, spool.sink, sop_classes)
                if not result.nothing_sent:
                    spool.wait_complete(ctx.quiet_period)
        else:
            ctx.source.retrieve(identifier, spool.sink, sop_classes)

    attempt(_identifier("STUDY", StudyInstanceUID=study.study_uid))
    missing = spool.missing()
    if not missing:
        return
    by_series: dict[str, list[str]] = {}
    for instance in expected:
        if instance.sop_instance_uid in missing:
            by_series.setdefault(instance.series.series_uid, []).append(instance.sop_instance_uid)
    for series_uid, sop_uids in by_series.items():
        attempt(
            _identifier(
                "IMAGE",
                StudyInstanceUID=study.study_uid,
                SeriesInstanceUID=series_uid,
                SOPInstanceUID=sop_uids,
            )
        )
    still = spool.missing()
    if still:
        raise TransientError(
            f"{len(still)} of {len(spool.expected)} instances did not arrive from the source"
            " (after a study-level and an image-level retrieve)"
        )


def _record_received(session: Session, rows: dict[str, Instance], spool: StudySpool) -> None:
    for sop_uid, spooled in spool.received.items():
        row = rows.get(sop_uid)
        if row is None:
            continue
        row.transfer_syntax_uid = spooled.transfer_syntax_uid
        row.sop_class_uid = row.sop_class_uid or spooled.sop_class_uid
        row.size = spooled.size
        row.sha256 = spooled.sha256
        row.received_at = utcnow()
    session.commit()


def _groups(items: list[SpooledInstance]) -> Iterator[list[SpooledInstance]]:
    """Split into groups whose (SOP class, syntax) pairs fit one association."""
    group: list[SpooledInstance] = []
    pairs: set[tuple[str, str]] = set()
    for item in sorted(items, key=lambda i: (i.sop_class_uid, i.transfer_syntax_uid)):
        pair = (item.sop_class_uid, item.transfer_syntax_uid)
        if pair not in pairs and len(pairs) == MAX_CONTEXTS:
            yield group
            group, pairs = [], set()
        pairs.add(pair)
        group.append(item)
    if group:
        yield group


def _store_one(session: Session, store: StoreSession, row: Instance, item: SpooledInstance) -> bool:
    """C-STORE one instance and record the outcome; return True when the target holds it."""
    try:
        status = store.store(item.path, item.sop_class_uid, item.transfer_syntax_uid)
    except ContextRefused as exc:
        row.store_status, row.store_error = None, str(exc)
        session.commit()
        return False
    row.store_status = status
    if is_success_or_warning(status):
        row.stored_at, row.store_error = utcnow(), ""
        session.commit()
        return True
    row.store_error = f"target answered C-STORE with {describe(status)}"
    session.commit()
    if (status & 0xFF00) == 0xA700:  # out of resources: worth another attempt
        raise TransientError(f"target is out of resources ({describe(status)})")
    return False


def _store(
    ctx: RelayContext, session: Session, rows: dict[str, Instance], items: list[SpooledInstance]
) -> list[str]:
    """Store every item; return the SOP Instance UIDs the target refused."""
    refused: list[str] = []
    for group in _groups(items):
        pairs = sorted({(i.sop_class_uid, i.transfer_syntax_uid) for i in group})
        with ctx.target.store_session(pairs) as store:
            for item in group:
                if not _store_one(session, store, rows[item.sop_instance_uid], item):
                    refused.append(item.sop_instance_uid)
    return refused


def _refusal_reason(rows: dict[str, Instance], refused: list[str]) -> str:
    reasons: dict[str, int] = {}
    for sop_uid in refused:
        reason = rows[sop_uid].store_error or "refused"
        reasons[reason] = reasons.get(reason, 0) + 1
    detail = "; ".join(f"{reason} ({count})" for reason, count in sorted(reasons.items()))
    return f"{len(refused)} of {len(rows)} instances refused by the target: {detail}"


def _no_instances_reason(study: Study) -> str:
    reported = study.reported_instances
    said = f"; the source reports {reported}" if reported else ""
    return f"the inventory found no instances in this study{said}: run inventory again and review"


def _quarantine(session: Session, study: Study, reason: str, error_class: str) -> StudyState:
    repo.set_state(session, study, StudyState.QUARANTINED, reason, error_class=error_class)
    repo.audit(session, "migrate", "quarantined", study.study_uid, reason=reason)
    session.commit()
    return StudyState.QUARANTINED


def migrate_study(ctx: RelayContext, study_id: int) -> StudyState:
    """Move one claimed study (state ``transferring``) and leave it in its next state."""
    with ctx.ledger.session() as session:
        study = session.get_one(Study, study_id)
        rows = {row.sop_instance_uid: row for row in repo.instances_of(session, study)}
        if not rows:
            return _quarantine(session, study, _no_instances_reason(study), "NoInstances")
        pending = [row for row in rows.values() if row.stored_at is None]
        spool = StudySpool(ctx.spool_dir / study.study_uid, (r.sop_instance_uid for r in pending))
        spool.reset()
        if pending:
            _retrieve(ctx, study, pending, spool)
        _record_received(session, rows, spool)
        unexpected = sorted(set(spool.received) - set(rows))
        if unexpected:
            spool.discard()
            reason = (
                f"the source sent {len(unexpected)} instances the inventory did not list"
                " (UIDs changed on retrieve, or the study changed): run inventory again and review"
            )
            return _quarantine(session, study, reason, "UnexpectedInstances")
        items = [spool.received[r.sop_instance_uid] for r in pending]
        refused = _store(ctx, session, rows, items)
        spool.discard(keep=refused)
        if refused:
            reason = _refusal_reason(rows, refused)
            repo.set_state(
                session, study, StudyState.QUARANTINED, reason, error_class="TargetRefused"
            )
            new_state = StudyState.QUARANTINED
        else:
            repo.set_state(session, study, StudyState.TRANSFERRED)
            new_state = StudyState.TRANSFERRED
        repo.audit(
            session,
            "migrate",
            new_state.value,
            study.study_uid,
            instances=len(rows),
            sent=len(items),
            refused=len(refused),
            bytes=sum(i.size for i in items),
        )
        session.commit()
        return new_state
