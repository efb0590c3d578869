"""Tests for the report stage (pacsmigrate.report) against a SQLite ledger."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from sqlalchemy.orm import Session

from pacsmigrate.ledger.db import Ledger, open_ledger
from pacsmigrate.ledger.models import Instance, Run, Series, Study
from pacsmigrate.ledger.states import StudyState
from pacsmigrate.report import build_report, summary_table, write_reports

PATIENT_ID = "MRN-7731942"
PATIENT_NAME = "Doe^Jane^Q"
EVIL_REASON = "<script>alert('x')</script> & more"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
JPEG_2000 = "1.2.840.10008.1.2.4.91"


def _study(session: Session, uid: str, state: StudyState, **fields: Any) -> Study:
    study = Study(study_uid=uid, state=state.value, **fields)
    session.add(study)
    session.flush()
    return study


def _series(session: Session, study: Study, uid: str, modality: str) -> Series:
    series = Series(study_id=study.id, series_uid=uid, modality=modality)
    session.add(series)
    session.flush()
    return series


def _instances(session: Session, series: Series, prefix: str, n: int, **fields: Any) -> None:
    fields.setdefault("sop_class_uid", CT_IMAGE)
    for i in range(n):
        session.add(
            Instance(
                study_id=series.study_id,
                series_id=series.id,
                sop_instance_uid=f"{prefix}.{i}",
                **fields,
            )
        )


def _populate(session: Session) -> None:
    # verified CT study: 3 instances stored (one with a warning) and present
    verified = _study(
        session, "1.2.3.1", StudyState.VERIFIED, patient_id=PATIENT_ID, patient_name=PATIENT_NAME
    )
    ct = _series(session, verified, "1.2.3.1.1", "CT")
    _instances(
        session,
        ct,
        "1.2.3.1.1",
        2,
        size=1000,
        store_status=0x0000,
        verify_state="present",
        transfer_syntax_uid=EXPLICIT_LE,
    )
    _instances(
        session,
        ct,
        "1.2.3.1.1w",
        1,
        size=500,
        store_status=0xB007,
        verify_state="present",
        transfer_syntax_uid=EXPLICIT_LE,
    )
    # failed CT + MR study: one stored, one missing on the target, one never sent
    failed = _study(
        session,
        "1.2.3.2",
        StudyState.FAILED,
        reason=EVIL_REASON,
        error_class="AssociationError",
        attempts=3,
        patient_id=PATIENT_ID,
        patient_name=PATIENT_NAME,
    )
    _instances(
        session,
        _series(session, failed, "1.2.3.2.1", "CT"),
        "1.2.3.2.1",
        1,
        size=200,
        store_status=0x0000,
        verify_state="missing",
    )
    _instances(
        session, _series(session, failed, "1.2.3.2.2", "MR"), "1.2.3.2.2", 1, sop_class_uid=MR_IMAGE
    )
    # quarantined MR study: two instances refused by the target with 0xA900
    quarantined = _study(
        session,
        "1.2.3.3",
        StudyState.QUARANTINED,
        reason="target refuses SOP class",
        error_class="Refused",
        attempts=1,
        patient_id="OTHER-ID",
    )
    _instances(
        session,
        _series(session, quarantined, "1.2.3.3.1", "MR"),
        "1.2.3.3.1",
        2,
        size=300,
        store_status=0xA900,
        store_error="data set does not match",
        transfer_syntax_uid=JPEG_2000,
        sop_class_uid=MR_IMAGE,
    )
    # queued study with a store error left from an earlier attempt; series without modality
    queued = _study(session, "1.2.3.4", StudyState.QUEUED)
    _instances(
        session,
        _series(session, queued, "1.2.3.4.1", ""),
        "1.2.3.4.1",
        1,
        store_error="association aborted",
    )
    # discovered study with no series yet
    _study(session, "1.2.3.5", StudyState.DISCOVERED)
    start = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
    for n in range(25):
        session.add(
            Run(
                stage="migrate",
                started_at=start + timedelta(minutes=n),
                finished_at=start + timedelta(minutes=n, seconds=30),
                outcome="ok",
                summary=json.dumps({"n": n}),
            )
        )
    session.add(Run(stage="verify", started_at=start + timedelta(hours=1), summary="not json"))


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    led = open_ledger(f"sqlite:///{tmp_path}/l.db")
    with led.session() as session, session.begin():
        _populate(session)
    yield led
    led.close()


@pytest.fixture
def report(ledger: Ledger) -> dict[str, Any]:
    with ledger.session() as session:
        return build_report(session)


def test_totals(report: dict[str, Any]) -> None:
    assert report["totals"] == {
        "studies": 5,
        "series": 5,
        "instances": 8,
        "bytes_received": 2 * 1000 + 500 + 200 + 2 * 300,
        "instances_stored": 4,
        "instances_refused": 2,
        "instances_verified": 3,
        "instances_missing": 1,
    }


def test_studies_by_state_lists_every_state(report: dict[str, Any]) -> None:
    assert list(report["studies_by_state"]) == [state.value for state in StudyState]
    assert report["studies_by_state"] == {
        "discovered": 1,
        "queued": 1,
        "transferring": 0,
        "transferred": 0,
        "verified": 1,
        "excluded": 0,
        "failed": 1,
        "quarantined": 1,
    }


def test_by_modality(report: dict[str, Any]) -> None:
    modality = report["by_modality"]
    assert list(modality) == ["(none)", "CT", "MR"]
    assert {k: modality["CT"][k] for k in ("studies", "series", "instances")} == {
        "studies": 2,
        "series": 2,
        "instances": 4,
    }
    assert {k: modality["MR"][k] for k in ("studies", "series", "instances")} == {
        "studies": 2,
        "series": 2,
        "instances": 3,
    }
    assert modality["CT"]["states"]["verified"] == 1
    assert modality["CT"]["states"]["failed"] == 1
    assert modality["MR"]["states"]["failed"] == 1
    assert modality["MR"]["states"]["quarantined"] == 1
    assert modality["MR"]["states"]["verified"] == 0
    assert modality["(none)"]["states"]["queued"] == 1


def test_failures(report: dict[str, Any]) -> None:
    failures = report["failures"]
    assert [(f["study_uid"], f["state"]) for f in failures] == [
        ("1.2.3.2", "failed"),
        ("1.2.3.3", "quarantined"),
        ("1.2.3.4", "queued"),
    ]
    failed, quarantined, queued = failures
    assert failed["reason"] == EVIL_REASON
    assert failed["error_class"] == "AssociationError"
    assert failed["attempts"] == 3
    assert failed["instance_counts"] == {"expected": 2, "reported": None, "stored": 1, "refused": 0}
    assert [i["sop_instance_uid"] for i in failed["instances"]] == ["1.2.3.2.1.0"]
    assert quarantined["instance_counts"]["refused"] == 2
    assert quarantined["instances"][0] == {
        "sop_instance_uid": "1.2.3.3.1.0",
        "sop_class_uid": MR_IMAGE,
        "transfer_syntax_uid": JPEG_2000,
        "store_status": "0xA900",
        "store_error": "data set does not match",
        "verify_state": "pending",
    }
    assert len(quarantined["instances"]) == 2
    assert queued["instances"][0]["store_status"] is None
    assert queued["instances"][0]["store_error"] == "association aborted"


def test_runs_are_the_latest_twenty(report: dict[str, Any]) -> None:
    runs = report["runs"]
    assert len(runs) == 20
    assert runs[0]["stage"] == "verify"
    assert runs[0]["summary"] == "not json"
    assert runs[0]["finished_at"] is None
    assert runs[1]["summary"] == {"n": 24}
    assert runs[1]["started_at"] == "2024-05-01T08:24:00+00:00"
    assert runs[-1]["summary"] == {"n": 6}


def test_write_reports_json_round_trips(report: dict[str, Any], tmp_path: Path) -> None:
    json_path, html_path = write_reports(report, tmp_path / "out" / "nested")
    assert json_path == tmp_path / "out" / "nested" / "report.json"
    assert html_path.name == "report.html"
    assert json.loads(json_path.read_text(encoding="utf-8")) == report
    assert list(json.loads(json_path.read_text(encoding="utf-8"))) == list(report)


def test_html_escapes_everything(report: dict[str, Any], tmp_path: Path) -> None:
    _, html_path = write_reports(report, tmp_path)
    page = html_path.read_text(encoding="utf-8")
    assert "<title>pacsmigrate report</title>" in page
    assert "<script" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; more" in page
    assert "0xA900 data set does not match SOP class" in page
    assert report["generated_at"] in page
    assert "http://" not in page and "https://" not in page


def test_phi_omitted_by_default(report: dict[str, Any], tmp_path: Path) -> None:
    json_path, html_path = write_reports(report, tmp_path)
    for text in (json_path.read_text(encoding="utf-8"), html_path.read_text(encoding="utf-8")):
        assert PATIENT_ID not in text
        assert "Doe" not in text
        assert "OTHER-ID" not in text
    assert all("patient_id" not in f for f in report["failures"])


def test_phi_shown_on_request(ledger: Ledger, tmp_path: Path) -> None:
    with ledger.session() as session:
        report = build_report(session, show_phi=True)
    assert report["failures"][0]["patient_id"] == PATIENT_ID
    assert report["failures"][1]["patient_id"] == "OTHER-ID"
    json_path, html_path = write_reports(report, tmp_path)
    assert PATIENT_ID in json_path.read_text(encoding="utf-8")
    assert PATIENT_ID in html_path.read_text(encoding="utf-8")


def test_summary_table_renders(report: dict[str, Any]) -> None:
    console = Console(record=True, width=100)
    console.print(summary_table(report))
    text = console.export_text()
    lines = {line.strip("│ ").split("│")[0].strip(): line for line in text.splitlines()}
    for state in StudyState:
        assert state.value in lines
    assert lines["failed"].rstrip(" │").endswith("1")
    assert lines["transferring"].rstrip(" │").endswith("0")
    assert lines["instances"].rstrip(" │").endswith("8")
    assert "3.2 KiB" in text


def test_empty_ledger(tmp_path: Path) -> None:
    led = open_ledger(f"sqlite:///{tmp_path}/empty.db")
    with led.session() as session:
        report = build_report(session)
    led.close()
    assert report["totals"]["studies"] == 0
    assert set(report["studies_by_state"].values()) == {0}
    assert report["by_modality"] == {} and report["failures"] == [] and report["runs"] == []
    _, html_path = write_reports(report, tmp_path / "out")
    assert "No failures." in html_path.read_text(encoding="utf-8")
