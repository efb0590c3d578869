"""Ledger: state machine, leases after a crash, audit chain; SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, select, text

from pacsmigrate.ledger import repo
from pacsmigrate.ledger.db import Ledger, open_ledger
from pacsmigrate.ledger.findings import FindingKind, FindingsCollector
from pacsmigrate.ledger.models import AuditRecord, Base, Study
from pacsmigrate.ledger.states import StudyState, check_transition

POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _postgres_available() -> bool:
    try:
        psycopg = pytest.importorskip("psycopg")
        psycopg.connect(
            "host=127.0.0.1 port=5432 user=postgres dbname=test", connect_timeout=3
        ).close()
    except Exception:
        return False
    return True


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ledger]:
    if request.param == "sqlite":
        opened = open_ledger(f"sqlite:///{tmp_path}/ledger.sqlite")
        yield opened
        opened.close()
        return
    if not _postgres_available():
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432 (database test, user postgres)")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    opened = open_ledger(f"{POSTGRES}?options=-csearch_path%3D{schema}")
    yield opened
    opened.close()
    with admin.begin() as connection:
        connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


def _study(ledger: Ledger, uid: str = "1.2.3", state: StudyState = StudyState.QUEUED) -> int:
    with ledger.session() as session:
        study = repo.upsert_study(session, uid, {"patient_id": "P1"}).row
        study.state = state.value
        session.commit()
        return int(study.id)


def test_transitions_follow_design() -> None:
    check_transition(StudyState.TRANSFERRING, StudyState.TRANSFERRED)
    with pytest.raises(ValueError, match="'discovered' to 'verified'"):
        check_transition(StudyState.DISCOVERED, StudyState.VERIFIED)
    with pytest.raises(ValueError):
        check_transition(StudyState.VERIFIED, StudyState.TRANSFERRED)


def test_claim_is_exclusive(ledger: Ledger) -> None:
    study_id = _study(ledger)
    with ledger.session() as session:
        assert repo.claim_study(session, study_id)
        session.commit()
    with ledger.session() as session:
        assert not repo.claim_study(session, study_id)
        study = session.get_one(Study, study_id)
        assert (study.state, study.attempts) == ("transferring", 1)


def test_stale_lease_of_a_dead_process_is_requeued(ledger: Ledger) -> None:
    study_id = _study(ledger)
    with ledger.session() as session:
        repo.claim_study(session, study_id)
        session.get_one(Study, study_id).lease_pid = 999_999_999  # no such process
        session.commit()
    with ledger.session() as session:
        assert repo.requeue_stale_leases(session, alive=lambda pid: False) == 1
        session.commit()
    with ledger.session() as session:
        study = session.get_one(Study, study_id)
        assert (study.state, study.attempts, study.lease_pid) == ("queued", 0, 0)
        assert "interrupted" in study.reason


def test_live_lease_is_kept(ledger: Ledger) -> None:
    study_id = _study(ledger)
    with ledger.session() as session:
        repo.claim_study(session, study_id)
        session.get_one(Study, study_id).lease_pid = 12345
        session.commit()
        assert repo.requeue_stale_leases(session, alive=lambda pid: True) == 0


def test_upsert_is_idempotent(ledger: Ledger) -> None:
    with ledger.session() as session:
        first = repo.upsert_study(session, "1.2.3", {"patient_id": "P1"})
        series = repo.upsert_series(session, first.row, "1.2.3.1", {"modality": "CT"}).row
        created = repo.upsert_instance(
            session, series, "1.2.3.1.1", {"sop_class_uid": "1.2"}
        ).created
        again = repo.upsert_instance(session, series, "1.2.3.1.1", {"sop_class_uid": "1.2"}).created
        second = repo.upsert_study(session, "1.2.3", {"patient_id": "P1"})
        session.commit()
        assert (first.created, created, again, second.created) == (True, True, False, False)
        assert repo.counts_by_state(session)["discovered"] == 1


def test_audit_chain_detects_edits_and_deletions(ledger: Ledger) -> None:
    with ledger.session() as session:
        for n in range(4):
            repo.audit(session, "migrate", "transferred", f"1.2.{n}", instances=n)
        session.commit()
        records = list(session.scalars(select(AuditRecord).order_by(AuditRecord.id)))
        assert repo.verify_audit_chain(records) is None
        records[2].detail = '{"instances": 99}'
        assert repo.verify_audit_chain(records) == records[2].id
        records[2].detail = '{"instances": 2}'
        assert repo.verify_audit_chain(records) is None
        assert repo.verify_audit_chain([records[0], records[1], records[3]]) == records[3].id


def test_runs_of_dead_processes_end_interrupted(ledger: Ledger) -> None:
    with ledger.session() as session:
        run = repo.start_run(session, "migrate")
        run.pid = 999_999_999
        live = repo.start_run(session, "migrate")
        live.pid = 12345
        session.commit()
        closed = repo.close_stale_runs(session, alive=lambda pid: pid == 12345)
        session.commit()
        assert closed == 1
        assert (run.outcome, live.outcome) == ("interrupted", "running")


def test_migrations_build_exactly_the_models(ledger: Ledger) -> None:
    """Alembic's head schema and the SQLAlchemy models agree (no forgotten migration)."""
    with ledger.engine.connect() as connection:
        diffs = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diffs == []


def test_findings_are_replaced_per_stage(ledger: Ledger) -> None:
    first = FindingsCollector()
    first.add(FindingKind.NOT_DICOM, "/data/a.txt")
    first.add(FindingKind.PRIVATE_CREATOR, "ACME 1.1", "3 elements")
    first.add(FindingKind.PRIVATE_CREATOR, "ACME 1.1", "2 elements")
    assessed = FindingsCollector()
    assessed.add(FindingKind.PAST_RETENTION, "1.2.3", study_uid="1.2.3")
    with ledger.session() as session:
        assert repo.replace_findings(session, "inventory", first) == 2
        assert repo.replace_findings(session, "assess", assessed) == 1
        session.commit()
        creator = repo.findings_of(session, "private_creator")[0]
        assert (creator.count, creator.detail, creator.severity) == (
            2,
            "2 elements; 3 elements",
            "info",
        )
        again = FindingsCollector()
        again.add(FindingKind.NOT_DICOM, "/data/b.txt")
        repo.replace_findings(session, "inventory", again)
        session.commit()
        kept = [(row.kind, row.subject) for row in repo.findings_of(session)]
    assert kept == [("not_dicom", "/data/b.txt"), ("past_retention", "1.2.3")]
