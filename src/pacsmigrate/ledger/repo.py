"""Repository functions: every one takes an explicit session; the caller commits.

Like ``pynetdicom/apps/qrscp/db.py: add_instance(ds, session)``.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from pacsmigrate.ledger.findings import KINDS, FindingsCollector, kinds_of_stage
from pacsmigrate.ledger.models import AuditRecord, Finding, Instance, Run, Series, Study, utcnow
from pacsmigrate.ledger.states import InstanceVerify, StudyState, check_transition

__all__ = [
    "UpsertResult",
    "audit",
    "claim_study",
    "close_stale_runs",
    "counts_by_state",
    "instance_count",
    "instances_of",
    "mark_missing",
    "finish_run",
    "findings_of",
    "replace_findings",
    "queue_discovered",
    "requeue_stale_leases",
    "set_state",
    "sop_uids_in_several_studies",
    "start_run",
    "upsert_instance",
    "upsert_series",
    "upsert_study",
    "verify_audit_chain",
]

HOST = socket.gethostname()
_AUDIT_LOCK = threading.Lock()


@dataclass(frozen=True)
class UpsertResult:
    row: Any
    created: bool
    changed: bool = False


def _assign(row: Any, fields: Mapping[str, Any]) -> bool:
    changed = False
    for name, value in fields.items():
        if value is not None and getattr(row, name) != value:
            setattr(row, name, value)
            changed = True
    return changed


def upsert_study(session: Session, study_uid: str, fields: Mapping[str, Any]) -> UpsertResult:
    study = session.scalar(select(Study).where(Study.study_uid == study_uid))
    if study is None:
        study = Study(study_uid=study_uid, **{k: v for k, v in fields.items() if v is not None})
        session.add(study)
        session.flush()
        return UpsertResult(study, True)
    changed = _assign(study, fields)
    if changed:
        study.updated_at = utcnow()
    return UpsertResult(study, False, changed)


def upsert_series(
    session: Session, study: Study, series_uid: str, fields: Mapping[str, Any]
) -> UpsertResult:
    series = session.scalar(
        select(Series).where(Series.study_id == study.id, Series.series_uid == series_uid)
    )
    if series is None:
        series = Series(study_id=study.id, series_uid=series_uid, **fields)
        session.add(series)
        session.flush()
        return UpsertResult(series, True)
    _assign(series, fields)
    return UpsertResult(series, False)


def upsert_instance(
    session: Session, series: Series, sop_instance_uid: str, fields: Mapping[str, Any]
) -> UpsertResult:
    instance = session.scalar(
        select(Instance).where(
            Instance.study_id == series.study_id, Instance.sop_instance_uid == sop_instance_uid
        )
    )
    if instance is None:
        instance = Instance(
            study_id=series.study_id,
            series_id=series.id,
            sop_instance_uid=sop_instance_uid,
            **fields,
        )
        session.add(instance)
        return UpsertResult(instance, True)
    _assign(instance, fields)
    return UpsertResult(instance, False)


def set_state(
    session: Session,
    study: Study,
    new: StudyState,
    reason: str = "",
    *,
    error_class: str = "",
) -> None:
    """Move a study to ``new``, recording why; refuses transitions DESIGN.md does not allow."""
    old = StudyState(study.state)
    check_transition(old, new)
    study.state = new.value
    study.reason = reason
    study.error_class = error_class
    study.updated_at = utcnow()
    if new != StudyState.TRANSFERRING:
        study.lease_host, study.lease_pid = "", 0


def queue_discovered(session: Session) -> int:
    """Default scope until a plan exists: every discovered study is queued."""
    result = session.execute(
        update(Study)
        .where(Study.state == StudyState.DISCOVERED.value)
        .values(state=StudyState.QUEUED.value, updated_at=utcnow())
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def claim_study(session: Session, study_id: int) -> bool:
    """Atomically take a queued study for this process (compare-and-set on the state)."""
    result = session.execute(
        update(Study)
        .where(Study.id == study_id, Study.state == StudyState.QUEUED.value)
        .values(
            state=StudyState.TRANSFERRING.value,
            lease_host=HOST,
            lease_pid=os.getpid(),
            attempts=Study.attempts + 1,
            updated_at=utcnow(),
        )
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def requeue_stale_leases(session: Session, alive: Callable[[int], bool] = _pid_alive) -> int:
    """Studies left ``transferring`` by a process on this host that no longer runs go back
    to ``queued`` (a crash or kill -9); their attempt does not count."""
    stale = session.scalars(
        select(Study).where(Study.state == StudyState.TRANSFERRING.value, Study.lease_host == HOST)
    ).all()
    count = 0
    for study in stale:
        if study.lease_pid == os.getpid() or alive(study.lease_pid):
            continue
        study.attempts = max(0, study.attempts - 1)
        set_state(session, study, StudyState.QUEUED, "resumed after an interrupted run")
        count += 1
    return count


def close_stale_runs(session: Session, alive: Callable[[int], bool] = _pid_alive) -> int:
    """Runs still marked ``running`` by a dead process on this host end as ``interrupted``."""
    stale = session.scalars(
        select(Run).where(Run.outcome == "running", Run.host == HOST, Run.pid != os.getpid())
    ).all()
    count = 0
    for run in stale:
        if not alive(run.pid):
            run.outcome = "interrupted"
            count += 1
    return count


def counts_by_state(session: Session) -> dict[str, int]:
    counts = {state.value: 0 for state in StudyState}
    for state, count in session.execute(select(Study.state, func.count()).group_by(Study.state)):
        counts[state] = int(count)
    return counts


def start_run(session: Session, stage: str) -> Run:
    run = Run(stage=stage, host=HOST, pid=os.getpid())
    session.add(run)
    session.flush()
    return run


def finish_run(session: Session, run: Run, outcome: str, summary: Mapping[str, Any]) -> None:
    run.finished_at = utcnow()
    run.outcome = outcome
    run.summary = json.dumps(summary, sort_keys=True, default=str)


def _stamp(at: datetime) -> str:
    """UTC seconds, the same whether the database kept the time zone or not."""
    if at.tzinfo is not None:
        at = at.astimezone(UTC).replace(tzinfo=None)
    return at.replace(microsecond=0).isoformat()


def _record_hash(
    prev_hash: str, at: datetime, stage: str, event: str, study_uid: str, detail: str
) -> str:
    payload = json.dumps([prev_hash, _stamp(at), stage, event, study_uid, detail])
    return hashlib.sha256(payload.encode()).hexdigest()


def audit(session: Session, stage: str, event: str, study_uid: str = "", **detail: Any) -> None:
    """Append one audit record chained to the previous one.

    The in-process lock keeps the chain linear across worker threads; across
    processes the chain relies on the database serialising writers (SQLite) and
    is made strict with a coordinator when several machines run (see DESIGN.md).
    """
    with _AUDIT_LOCK:
        last = session.scalar(select(AuditRecord.hash).order_by(AuditRecord.id.desc()).limit(1))
        at = utcnow().replace(microsecond=0)
        body = json.dumps(detail, sort_keys=True, default=str)
        prev = last or ""
        session.add(
            AuditRecord(
                at=at,
                stage=stage,
                event=event,
                study_uid=study_uid,
                detail=body,
                prev_hash=prev,
                hash=_record_hash(prev, at, stage, event, study_uid, body),
            )
        )
        session.flush()


def verify_audit_chain(records: Sequence[AuditRecord]) -> int | None:
    """Return the id of the first record whose chain is broken, or ``None``."""
    prev = ""
    for record in records:
        expected = _record_hash(
            prev, record.at, record.stage, record.event, record.study_uid, record.detail
        )
        if record.prev_hash != prev or record.hash != expected:
            return record.id
        prev = record.hash
    return None


def instances_of(session: Session, study: Study) -> list[Instance]:
    return list(session.scalars(select(Instance).where(Instance.study_id == study.id)))


def instance_count(session: Session, study: Study) -> int:
    return int(
        session.scalar(select(func.count(Instance.id)).where(Instance.study_id == study.id)) or 0
    )


def sop_uids_in_several_studies(session: Session) -> list[tuple[str, int]]:
    """(SOP Instance UID, number of studies) for every UID the ledger has in 2+ studies."""
    studies = func.count(func.distinct(Instance.study_id))
    query = (
        select(Instance.sop_instance_uid, studies)
        .group_by(Instance.sop_instance_uid)
        .having(studies > 1)
        .order_by(Instance.sop_instance_uid)
    )
    return [(str(uid), int(count)) for uid, count in session.execute(query)]


def mark_missing(session: Session, study: Study, present: set[str]) -> int:
    """Set each instance's verify state from the target's SOP Instance UIDs; return missing."""
    missing = 0
    for instance in instances_of(session, study):
        if instance.sop_instance_uid in present:
            instance.verify_state = InstanceVerify.PRESENT.value
        else:
            instance.verify_state = InstanceVerify.MISSING.value
            instance.stored_at = None
            instance.store_status = None
            missing += 1
    return missing


def replace_findings(session: Session, stage: str, collected: FindingsCollector) -> int:
    """Replace every finding of ``stage``'s kinds by ``collected``; returns the row count."""
    kinds = [kind.value for kind in kinds_of_stage(stage)]
    session.execute(delete(Finding).where(Finding.kind.in_(kinds)))
    rows = collected.rows()
    for kind, subject, count, detail, study_uid in rows:
        info = KINDS[kind]
        session.add(
            Finding(
                kind=kind.value,
                severity=info.severity.value,
                stage=info.stage,
                subject=subject,
                count=count,
                detail=detail,
                study_uid=study_uid,
            )
        )
    session.flush()
    return len(rows)


def findings_of(session: Session, kind: str | None = None) -> list[Finding]:
    query = select(Finding).order_by(Finding.kind, Finding.subject)
    if kind is not None:
        query = query.where(Finding.kind == kind)
    return list(session.scalars(query))
