"""Inventory against C-FIND peers that hide studies: capped answers, repeated rows,
empty StudyDates, zero-image studies and wrong instance counts (FIELD-NOTES 1, 2, 16).

The peer (``testing/findscp.py``) truncates every answer at ``cap`` rows and
still reports success, as real PACS do. A complete inventory must list every
study anyway, and say exactly which slices it could not complete.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from sqlalchemy import select

from pacsmigrate.assess.render import render_html
from pacsmigrate.assess.stage import AssessOptions, run_assess
from pacsmigrate.endpoints.base import parse_dimse_url
from pacsmigrate.endpoints.dimse import DimseEndpoint, Timeouts
from pacsmigrate.inventory.crawl import InventoryOptions, InventorySummary, run_inventory
from pacsmigrate.ledger.db import Ledger, open_ledger
from pacsmigrate.ledger.models import Instance, Study
from pacsmigrate.testing.findscp import running_find_scp
from tests.conftest import findings_by_kind

ROOT = "1.2.826.0.1.3680043.10.1234.77"
CT = "1.2.840.10008.5.1.4.1.1.2"
TODAY = date(2026, 12, 4)


def _instance(study: int, series: int, image: int, **study_fields: str) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.StudyInstanceUID = f"{ROOT}.{study}"
    ds.SeriesInstanceUID = f"{ROOT}.{study}.{series}"
    ds.SOPInstanceUID = f"{ROOT}.{study}.{series}.{image}"
    ds.SOPClassUID = CT
    ds.InstanceNumber = str(image)
    ds.SeriesNumber = str(series)
    for keyword, value in study_fields.items():
        setattr(ds, keyword, value)
    return ds


def _archive(studies: int, *, seed: int = 3, empty_dates: int = 0) -> list[Dataset]:
    """``studies`` studies of 1-2 series of 1-3 images; the last ``empty_dates`` undated."""
    rng = random.Random(seed)
    instances = []
    start = date(2018, 1, 1)
    for number in range(studies):
        day = start + timedelta(days=rng.randrange(0, 6 * 365))
        fields = {
            "PatientID": f"P{number:05d}",
            "PatientName": f"{rng.choice('ABCDEFGHKLMNPRSTW')}{rng.choice('aeiou')}n^X",
            "StudyDate": "" if number >= studies - empty_dates else day.strftime("%Y%m%d"),
            "Modality": rng.choice(["CT", "MR", "CR", "US"]),
        }
        for series in range(1, rng.randint(1, 2) + 1):
            for image in range(1, rng.randint(1, 3) + 1):
                instances.append(_instance(number, series, image, **fields))
    return instances


def _inventory(
    tmp_path: Path, instances: Sequence[Dataset], options: InventoryOptions, **peer: object
) -> tuple[Ledger, InventorySummary]:
    ledger = open_ledger(f"sqlite:///{tmp_path}/ledger.sqlite")
    with running_find_scp(instances, **peer) as scp:  # type: ignore[arg-type]
        source = DimseEndpoint(parse_dimse_url(scp.dimse_url("TEST"), "TEST"), Timeouts(dimse=30))
        summary = run_inventory(source, ledger, options)
    return ledger, summary


def _ledger_uids(ledger: Ledger) -> tuple[set[str], set[str]]:
    with ledger.session() as session:
        return (
            set(session.scalars(select(Study.study_uid))),
            set(session.scalars(select(Instance.sop_instance_uid))),
        )


def _expected(instances: Sequence[Dataset]) -> tuple[set[str], set[str]]:
    return (
        {str(ds.StudyInstanceUID) for ds in instances},
        {str(ds.SOPInstanceUID) for ds in instances},
    )


@pytest.mark.parametrize(
    ("cap", "configured"),
    [(40, 40), (100, 0)],
    ids=["configured-cap-40", "unknown-cap-round-100"],
)
def test_a_capped_source_yields_a_complete_inventory(
    tmp_path: Path, cap: int, configured: int
) -> None:
    instances = _archive(400, empty_dates=25)
    options = InventoryOptions(find_cap=configured, today=TODAY)
    ledger, summary = _inventory(tmp_path, instances, options, cap=cap)
    assert _ledger_uids(ledger) == _expected(instances)
    assert summary.slices_split > 0
    assert "slice_truncated" not in findings_by_kind(ledger)
    with ledger.session() as session:
        undated = session.scalars(select(Study.study_uid).where(Study.study_date == "")).all()
    assert len(undated) == 25  # found by the sweep: no date query matches them


def test_without_splitting_the_cap_would_hide_studies(tmp_path: Path) -> None:
    """The peer really truncates: one plain study query sees only ``cap`` studies."""
    instances = _archive(120)
    with running_find_scp(instances, cap=40) as scp:
        source = DimseEndpoint(parse_dimse_url(scp.dimse_url("TEST"), "TEST"), Timeouts())
        query = Dataset()
        query.QueryRetrieveLevel = "STUDY"
        query.StudyInstanceUID = ""
        assert len(list(source.find(query))) == 40


def test_a_slice_that_cannot_be_split_is_reported_exactly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """60 CT studies on one day of one patient: no key separates them."""
    crowd = [
        _instance(
            1000 + n,
            1,
            1,
            PatientID="C1",
            PatientName="Aaaron^Same",
            StudyDate="20240301",
            Modality="CT",
        )
        for n in range(60)
    ]
    instances = _archive(50) + crowd
    options = InventoryOptions(find_cap=40, today=TODAY)
    ledger, _ = _inventory(tmp_path, instances, options, cap=40)
    truncated = findings_by_kind(ledger).get("slice_truncated", {})
    assert set(truncated) == {
        "StudyDate=20240301, ModalitiesInStudy=CT, PatientName=Aaa*, PatientID=C1*",
        # the sweep for undated studies meets the same crowd and cannot rule them out
        "StudyDate any, including empty, ModalitiesInStudy=CT, PatientName=Aaa*, PatientID=C1*",
    }
    studies, _ = _ledger_uids(ledger)
    assert studies <= _expected(instances)[0]
    assert len(_expected(instances)[0] - studies) == 60 - 40  # what the cap really hid
    # the report and the logs show the slice's shape, not the patient's name or ID
    with ledger.session() as session:
        html = render_html(run_assess(session, AssessOptions(source_label="peer")))
    assert "PatientName=(3 characters)*, PatientID=(2 characters)*" in html
    assert "Aaa*" not in html and "C1*" not in html
    assert "may be truncated" in caplog.text
    assert "Aaa" not in caplog.text and "C1*" not in caplog.text


def test_repeated_rows_are_counted_once_and_reported(tmp_path: Path) -> None:
    instances = _archive(30)
    ledger, summary = _inventory(
        tmp_path, instances, InventoryOptions(today=TODAY), duplicate_rows=True
    )
    assert _ledger_uids(ledger) == _expected(instances)
    assert (summary.studies, summary.instances) == (30, len(instances))
    duplicates = findings_by_kind(ledger)["duplicate_rows"]
    # every study repeated its study row, each series row and each image row once
    expected = {}
    for ds in instances:
        uid = str(ds.StudyInstanceUID)
        expected[uid] = expected.get(uid, 1) + 1
    series = {(str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)) for ds in instances}
    for study_uid, _ in series:
        expected[study_uid] += 1
    assert duplicates == expected


def test_zero_image_studies_and_wrong_counts_become_findings(tmp_path: Path) -> None:
    instances = _archive(20)
    empty = []
    for number in (900, 901, 902):
        ds = Dataset()
        ds.StudyInstanceUID = f"{ROOT}.{number}"
        ds.PatientID = f"E{number}"
        ds.StudyDate = "20200101"
        empty.append(ds)
    liars = {f"{ROOT}.3": 99, f"{ROOT}.7": 1}
    ledger, _ = _inventory(
        tmp_path,
        instances,
        InventoryOptions(today=TODAY),
        empty_studies=empty,
        reported_instances=liars,
    )
    found = findings_by_kind(ledger)
    assert set(found["zero_image_study"]) == {str(ds.StudyInstanceUID) for ds in empty}
    real = {uid: sum(1 for ds in instances if ds.StudyInstanceUID == uid) for uid in liars}
    assert set(found["instance_count_mismatch"]) == {
        uid for uid, told in liars.items() if told != real[uid]
    }


def test_a_second_inventory_skips_unchanged_studies_and_finds_new_ones(tmp_path: Path) -> None:
    instances = _archive(40)
    ledger, first = _inventory(tmp_path, instances, InventoryOptions(today=TODAY))
    added = [_instance(500, 1, 1, PatientID="NEW", StudyDate="20250505", Modality="MR")]
    grown = [_instance(5, 9, 1, **_study_fields(instances, f"{ROOT}.5"))]
    with running_find_scp([*instances, *added, *grown]) as scp:
        source = DimseEndpoint(parse_dimse_url(scp.dimse_url("TEST"), "TEST"), Timeouts())
        second = run_inventory(source, ledger, InventoryOptions(today=TODAY))
        image_queries = len(scp.requests_at("IMAGE"))
    assert (first.studies_new, second.studies_new) == (40, 1)
    assert second.instances_new == 2
    assert second.studies_unchanged == 39  # their instance count matched: not queried again
    assert image_queries == 1 + 2  # the new study's series, and study 5's two series
    studies, uids = _ledger_uids(ledger)
    assert uids == _expected([*instances, *added, *grown])[1]


def _study_fields(instances: Sequence[Dataset], study_uid: str) -> dict[str, str]:
    ds = next(ds for ds in instances if ds.StudyInstanceUID == study_uid)
    keys = ("PatientID", "PatientName", "StudyDate", "Modality")
    return {key: str(ds.get(key, "")) for key in keys}
