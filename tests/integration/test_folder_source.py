"""A folder source (file:///): inventory reads headers only, assess finds every seeded problem.

The dirty corpus (``testing/dirty.py``) seeds each finding kind a folder can
show, with the exact subjects and counts; these tests hold inventory and
assess to them.
"""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import pydicom
import pytest
from sqlalchemy import select

from pacsmigrate.assess.stage import AssessOptions, run_assess
from pacsmigrate.endpoints.filesystem import FolderEndpoint
from pacsmigrate.inventory.files import run_folder_inventory
from pacsmigrate.ledger.db import Ledger, open_ledger
from pacsmigrate.ledger.models import Instance, Study
from pacsmigrate.testing.dirty import DirtyCorpus, generate_dirty_hospital
from tests.conftest import findings_by_kind, run_cli

RETENTION_TODAY = date(2026, 1, 1)  # the corpus's past_retention set is for this day


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> DirtyCorpus:
    return generate_dirty_hospital(tmp_path_factory.mktemp("dirty") / "archive", seed=7)


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return open_ledger(f"sqlite:///{tmp_path}/ledger.sqlite")


def _uids(ledger: Ledger) -> tuple[set[str], set[str]]:
    with ledger.session() as session:
        studies = set(session.scalars(select(Study.study_uid)))
        instances = set(session.scalars(select(Instance.sop_instance_uid)))
    return studies, instances


def test_every_seeded_finding_has_its_exact_subjects_and_counts(
    corpus: DirtyCorpus, ledger: Ledger
) -> None:
    summary = run_folder_inventory(FolderEndpoint(corpus.root), ledger)
    with ledger.session() as session:
        options = AssessOptions(source_label="archive", retention_years=10, today=RETENTION_TODAY)
        assessment = run_assess(session, options)
    found = findings_by_kind(ledger)
    for kind, subjects in sorted(corpus.expected.items()):
        assert set(found.get(kind, {})) == subjects, kind
        for subject in subjects:
            assert found[kind][subject] == corpus.expected_counts[(kind, subject)], (kind, subject)
    assert set(found) <= {kind for kind, subjects in corpus.expected.items() if subjects}
    groups = {group.kind: group.count for group in assessment.findings}
    assert groups == {kind: len(s) for kind, s in corpus.expected.items() if s}
    assert summary.files == len(corpus.files)


def test_inventory_lists_every_readable_instance_and_nothing_else(
    corpus: DirtyCorpus, ledger: Ledger
) -> None:
    run_folder_inventory(FolderEndpoint(corpus.root), ledger)
    studies, instances = _uids(ledger)
    assert studies == corpus.studies
    assert instances == corpus.instances
    with ledger.session() as session:
        sizes = session.execute(select(Instance.source_path, Instance.size)).all()
    assert all(Path(path).stat().st_size == size for path, size in sizes)


def test_a_dicomdir_is_read_for_the_files_it_references(
    corpus: DirtyCorpus, ledger: Ledger
) -> None:
    summary = run_folder_inventory(FolderEndpoint(corpus.dicomdir_root), ledger)
    _, instances = _uids(ledger)
    assert instances == corpus.dicomdir_instances
    assert not instances & corpus.unreferenced
    assert summary.files == len(corpus.dicomdir_instances)


def test_a_second_inventory_reports_only_what_is_new_and_forgets_nothing(
    corpus: DirtyCorpus, tmp_path: Path, ledger: Ledger
) -> None:
    archive = tmp_path / "archive"
    shutil.copytree(corpus.root, archive)
    first = run_folder_inventory(FolderEndpoint(archive), ledger)
    assert first.studies_new == len(corpus.studies)

    clean = next(path for path in sorted(archive.rglob("*")) if _is_clean_instance(path))
    ds = pydicom.dcmread(clean)
    ds.StudyInstanceUID = ds.StudyInstanceUID + ".99"
    ds.SeriesInstanceUID = ds.SeriesInstanceUID + ".99"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID + ".99"
    ds.save_as(archive / "new-study.dcm")
    clean.unlink()  # gone from the folder: the ledger must still know it

    second = run_folder_inventory(FolderEndpoint(archive), ledger)
    assert (second.studies_new, second.instances_new, second.studies_changed) == (1, 1, 0)
    studies, instances = _uids(ledger)
    assert studies == corpus.studies | {ds.StudyInstanceUID}
    assert instances == corpus.instances | {ds.SOPInstanceUID}


def _is_clean_instance(path: Path) -> bool:
    if not path.is_file() or path.name == "DICOMDIR":
        return False
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception:
        return False
    return str(ds.get("Modality", "")) == "CT" and "PatientID" in ds and not _has_private(ds)


def _has_private(ds: pydicom.Dataset) -> bool:
    return any(element.tag.is_private for element in ds)


def test_cli_inventory_and_assess_of_a_folder(corpus: DirtyCorpus, tmp_path: Path) -> None:
    project = tmp_path / "project"
    init = run_cli("init", str(project), "--source", corpus.root.as_uri())
    assert init.returncode == 0, init.stderr
    inventory = run_cli("-C", str(project), "inventory")
    assert inventory.returncode == 0, inventory.stderr
    assert f"{len(corpus.files)} files, {len(corpus.studies)} studies" in inventory.stdout
    assess = run_cli("-C", str(project), "assess", "--throughput", "50")
    assert assess.returncode == 0, assess.stderr
    assert "Incorrect value" not in assess.stderr + inventory.stderr  # pydicom noise is hidden
    html = (project / "reports" / "assessment.html").read_text(encoding="utf-8")
    assert html.count("<svg") >= 4
    csv_rows = (project / "reports" / "findings.csv").read_text().splitlines()
    expected_rows = sum(len(s) for k, s in corpus.expected.items() if k != "past_retention")
    assert len(csv_rows) == 1 + expected_rows
    patient_ids = corpus.expected["patient_id_conflict"]
    assert not any(pid in html for pid in patient_ids)  # PHI only with --show-phi
    migrate = run_cli("-C", str(project), "migrate")
    assert migrate.returncode == 2
    assert "migrates from dimse:// sources only" in migrate.stderr
