"""End to end: ``pacsmigrate run`` from one real Orthanc to another.

Every test drives the command line in a subprocess, as a user would, and then
checks what a user can check: the exit code, the ledger, the report, and what
the target Orthanc really holds, compared element by element with the source.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import pydicom
import pytest
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pynetdicom.dsutils import split_dataset
from sqlalchemy import select

from pacsmigrate.ledger.db import open_ledger
from pacsmigrate.ledger.models import Instance, Study
from pacsmigrate.testing.hospital import GeneratedInstance
from pacsmigrate.testing.orthanc import OrthancServer
from tests.conftest import Peers, needs_orthanc, run_cli

pytestmark = [pytest.mark.orthanc, needs_orthanc, pytest.mark.timeout(120)]

SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
PIXEL_DATA = 0x7FE00010
PATIENT_NAME = 0x00100010
SPECIFIC_CHARACTER_SET = 0x00080005
TRAILING_PADDING = 0xFFFCFFFC


# ------------------------------------------------------------------ helpers


@dataclass(frozen=True)
class StudyRow:
    state: str
    reason: str
    updated_at: object


@dataclass(frozen=True)
class InstanceRow:
    study_uid: str
    transfer_syntax_uid: str
    size: int | None
    sha256: str
    store_status: int | None
    store_error: str
    stored_at: object
    verify_state: str


def read_ledger(project: Path) -> tuple[dict[str, StudyRow], dict[str, InstanceRow]]:
    """Studies by Study Instance UID and instances by SOP Instance UID, as plain values."""
    ledger = open_ledger("sqlite:///" + str(project / "ledger.sqlite"))
    try:
        with ledger.session() as session:
            studies = {
                s.study_uid: StudyRow(s.state, s.reason, s.updated_at)
                for s in session.scalars(select(Study))
            }
            rows = session.execute(select(Instance, Study.study_uid).join(Study))
            instances = {
                i.sop_instance_uid: InstanceRow(
                    study_uid,
                    i.transfer_syntax_uid,
                    i.size,
                    i.sha256,
                    i.store_status,
                    i.store_error,
                    i.stored_at,
                    i.verify_state,
                )
                for i, study_uid in rows
            }
    finally:
        ledger.close()
    return studies, instances


def run_ok(*args: str) -> str:
    """Run the CLI, require exit code 0, return stdout."""
    result = run_cli(*args)
    assert result.returncode == 0, (
        f"pacsmigrate {' '.join(args)} exited {result.returncode}\n"
        f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
    return result.stdout


def migrate_all(peers: Peers, project: Path, source_query: str = "") -> Path:
    peers.init_project(project, source_query=source_query)
    run_ok("-C", str(project), "run", "--workers", "3")
    return project


def study_uids(hospital: Iterable[GeneratedInstance]) -> set[str]:
    return {item.study_uid for item in hospital}


def parse(data: bytes) -> Dataset:
    """Parse a Part 10 file; elements stay raw (bytes) until something reads them."""
    return pydicom.dcmread(BytesIO(data))


def dataset_bytes_sha256(data: bytes, tmp_path: Path) -> str:
    """SHA-256 of a Part 10 file's data set bytes (everything after the File Meta)."""
    path = tmp_path / "dataset.dcm"
    path.write_bytes(data)
    _meta, offset = split_dataset(path)
    return hashlib.sha256(data[offset:]).hexdigest()


def _droppable(tag: BaseTag) -> bool:
    """Elements a DICOM sender may drop (FIELD-NOTES 9): retired group lengths
    (gggg,0000) and the Data Set Trailing Padding item (FFFC,FFFC)."""
    return tag.element == 0x0000 or tag == TRAILING_PADDING


def dataset_differences(a: Dataset, b: Dataset, where: str = "") -> list[str]:
    """Every element that differs between two data sets, recursing into sequences.

    Values are compared as the raw bytes read from the file where both sides
    still hold them raw (so a re-encoded name or a changed pad byte shows),
    sequences item by item (so a defined length written as undefined does not).
    """
    differences: list[str] = []
    tags = sorted(t for t in set(a.keys()) | set(b.keys()) if not _droppable(t))
    for tag in tags:
        label = f"{where}{tag}"
        if tag not in a or tag not in b:
            differences.append(f"{label}: only in the {'source' if tag in a else 'target'}")
            continue
        raw_a, raw_b = a.get_item(tag), b.get_item(tag)  # before a[tag] converts them
        elem_a, elem_b = a[tag], b[tag]
        if elem_a.VR == "SQ" or elem_b.VR == "SQ":
            differences.extend(_sequence_differences(elem_a.value, elem_b.value, label))
        elif isinstance(raw_a, RawDataElement) and isinstance(raw_b, RawDataElement):
            if (raw_a.VR, raw_a.value) != (raw_b.VR, raw_b.value):
                differences.append(f"{label}: {_short(raw_a.value)} != {_short(raw_b.value)}")
        elif (elem_a.VR, elem_a.value) != (elem_b.VR, elem_b.value):
            differences.append(f"{label}: {_short(elem_a.value)} != {_short(elem_b.value)}")
    return differences


def _sequence_differences(va: object, vb: object, label: str) -> list[str]:
    if not (isinstance(va, Sequence) and isinstance(vb, Sequence)):
        return [f"{label}: a sequence on one side only"]
    if len(va) != len(vb):
        return [f"{label}: {len(va)} items != {len(vb)} items"]
    differences: list[str] = []
    for index, (item_a, item_b) in enumerate(zip(va, vb, strict=True)):
        differences.extend(dataset_differences(item_a, item_b, f"{label}[{index}]."))
    return differences


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def raw_differences(source: Dataset, target: Dataset, tags: Iterable[int]) -> list[str]:
    """Compare elements as the raw bytes in the files (call before anything decodes them)."""
    differences: list[str] = []
    for tag in tags:
        raw_source, raw_target = source.get_item(tag), target.get_item(tag)
        for raw in (raw_source, raw_target):
            assert raw is None or isinstance(raw.value, bytes), f"{tag:08X} was decoded"
        if raw_source is None or raw_target is None:
            if raw_source is not raw_target:
                differences.append(f"({tag:08X}) present on one side only")
        elif raw_source.value != raw_target.value:
            differences.append(
                f"({tag:08X}) raw bytes {_short(raw_source.value)} != {_short(raw_target.value)}"
            )
    return differences


def copy_differences(uid: str, source_bytes: bytes, target_bytes: bytes) -> list[str]:
    """How the target's copy of an instance differs from the source's (empty: equal)."""
    source, target = parse(source_bytes), parse(target_bytes)
    source_ts = source.file_meta.TransferSyntaxUID
    target_ts = target.file_meta.TransferSyntaxUID
    if source_ts != target_ts:
        return [f"{uid}: transfer syntax {source_ts} became {target_ts}"]
    found = raw_differences(source, target, (PIXEL_DATA, PATIENT_NAME))
    # pydicom decodes SpecificCharacterSet while reading (it needs it to decode
    # text), so that one is compared as a value.
    source_charset, target_charset = (
        getattr(ds.get(SPECIFIC_CHARACTER_SET), "value", None) for ds in (source, target)
    )
    if source_charset != target_charset:
        found.append(f"SpecificCharacterSet {source_charset!r} != {target_charset!r}")
    found.extend(dataset_differences(source, target))
    return [f"{uid}: {d}" for d in found]


def fetch_both(peers: Peers) -> dict[str, tuple[bytes, bytes]]:
    """SOP Instance UID -> (source file, target file) for every source instance."""
    source_index = peers.source.sop_instance_index()
    target_index = peers.target.sop_instance_index()
    missing = sorted(set(source_index) - set(target_index))
    assert not missing, f"target lacks {len(missing)} source instances: {missing[:3]}"
    return {
        uid: (peers.source.instance_file(oid), peers.target.instance_file(target_index[uid]))
        for uid, oid in source_index.items()
    }


def orthanc_instance_count(server: OrthancServer) -> int:
    return int(server.statistics()["CountInstances"])


# ------------------------------------------------------------------ tests


def test_run_migrates_and_verifies_every_study(
    peers: Peers, hospital: list[GeneratedInstance], tmp_path: Path
) -> None:
    project = migrate_all(peers, tmp_path / "project")

    studies, instances = read_ledger(project)
    assert set(studies) == study_uids(hospital)
    not_verified = {uid: row for uid, row in studies.items() if row.state != "verified"}
    assert not not_verified, f"studies not verified: {not_verified}"

    expected = {item.sop_instance_uid: item for item in hospital}
    assert set(instances) == set(expected)
    for uid, row in instances.items():
        assert SHA256_HEX.match(row.sha256), f"{uid}: sha256 {row.sha256!r}"
        assert row.size is not None and row.size > 0, f"{uid}: size {row.size}"
        assert row.store_status == 0x0000, f"{uid}: store_status {row.store_status}"
        assert row.store_error == "", f"{uid}: {row.store_error}"
        assert row.verify_state == "present", f"{uid}: verify_state {row.verify_state}"
        assert row.study_uid == expected[uid].study_uid
        assert row.transfer_syntax_uid == expected[uid].transfer_syntax_uid, uid

    # What the target really holds: exactly the hospital's instances.
    assert set(peers.target.sop_instance_index()) == set(expected)

    report = json.loads((project / "reports" / "report.json").read_text(encoding="utf-8"))
    totals = report["totals"]
    assert totals["studies"] == len(study_uids(hospital))
    assert totals["series"] == len({item.series_uid for item in hospital})
    assert totals["instances"] == len(hospital)
    assert totals["instances_stored"] == len(hospital)
    assert totals["instances_verified"] == len(hospital)
    assert totals["instances_refused"] == 0
    assert totals["instances_missing"] == 0
    assert totals["bytes_received"] == sum(row.size or 0 for row in instances.values())
    assert report["studies_by_state"]["verified"] == len(study_uids(hospital))
    assert report["failures"] == []
    assert (project / "reports" / "report.html").is_file()

    # after a migration, assess estimates from the rate that migration measured
    run_ok("-C", str(project), "assess")
    assessment = json.loads((project / "reports" / "assessment.json").read_text())
    estimate = assessment["estimate"]
    assert estimate["basis"].startswith("measured: migrate run"), estimate
    assert f"stored {len(hospital)} in" in estimate["basis"]
    assert estimate["seconds"] == pytest.approx(len(hospital) / estimate["throughput"], abs=0.1)
    assert assessment["sized_studies"] == len(study_uids(hospital))  # sizes known once received


def test_target_copies_equal_the_source_element_by_element(
    peers: Peers, hospital: list[GeneratedInstance], tmp_path: Path
) -> None:
    project = migrate_all(peers, tmp_path / "project")
    _studies, ledger_rows = read_ledger(project)
    pairs = fetch_both(peers)
    assert set(pairs) == {item.sop_instance_uid for item in hospital}

    problems: list[str] = []
    for uid, (source_bytes, target_bytes) in sorted(pairs.items()):
        problems.extend(copy_differences(uid, source_bytes, target_bytes))
        # Orthanc keeps an uploaded file as it was uploaded and its DIMSE
        # sender drops only group lengths and trailing padding, which the
        # generated files do not have; so the hash our SCP recorded at receipt
        # must be the hash of the source's own data set bytes.
        if ledger_rows[uid].sha256 != dataset_bytes_sha256(source_bytes, tmp_path):
            problems.append(f"{uid}: ledger sha256 is not the hash of the source data set")
    assert not problems, "\n".join(problems[:40])

    # The comparison covered what it is meant to cover: every image's pixel
    # data and the seven patients whose names are not ASCII.
    sources = [parse(source_bytes) for source_bytes, _target in pairs.values()]
    images = sum(1 for item in hospital if item.modality not in {"SR", "DOC"})
    assert sum(1 for ds in sources if PIXEL_DATA in ds) == images
    charsets = {
        str(ds[SPECIFIC_CHARACTER_SET].value) for ds in sources if SPECIFIC_CHARACTER_SET in ds
    }
    assert len(charsets) == 7, charsets


def test_second_run_is_a_no_op(peers: Peers, tmp_path: Path) -> None:
    project = migrate_all(peers, tmp_path / "project")
    studies_before, instances_before = read_ledger(project)
    count_before = orthanc_instance_count(peers.target)
    changes_before = peers.target.get("/changes?last")["Last"]

    run_ok("-C", str(project), "run", "--workers", "3")

    studies_after, instances_after = read_ledger(project)
    assert studies_after == studies_before  # same states, reasons, timestamps
    assert instances_after == instances_before  # nothing sent again (stored_at unchanged)
    assert orthanc_instance_count(peers.target) == count_before
    assert peers.target.get("/changes?last")["Last"] == changes_before
    report = json.loads((project / "reports" / "report.json").read_text(encoding="utf-8"))
    last_migrate = next(run for run in report["runs"] if run["stage"] == "migrate")
    assert last_migrate["summary"] == {}, last_migrate


def test_c_get_keeps_each_instance_in_its_transfer_syntax(
    peers: Peers, hospital: list[GeneratedInstance], tmp_path: Path
) -> None:
    project = migrate_all(peers, tmp_path / "project", source_query="&retrieve=get")

    studies, instances = read_ledger(project)
    assert {row.state for row in studies.values()} == {"verified"}, studies
    assert len(studies) == len(study_uids(hospital))

    expected = {item.sop_instance_uid: item.transfer_syntax_uid for item in hospital}
    assert {uid: row.transfer_syntax_uid for uid, row in instances.items()} == expected
    problems: list[str] = []
    for uid, (source_bytes, target_bytes) in sorted(fetch_both(peers).items()):
        source_ts = parse(source_bytes).file_meta.TransferSyntaxUID
        assert source_ts == expected[uid], f"{uid}: the source holds {source_ts}"
        problems.extend(copy_differences(uid, source_bytes, target_bytes))
    assert not problems, "\n".join(problems[:40])
