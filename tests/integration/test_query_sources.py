"""Inventory and assess of a real PACS (Orthanc) over DIMSE C-FIND and over QIDO-RS.

Orthanc holds the dirty corpus; whatever it accepted must be listed exactly,
and the cross-record findings must match what the corpus seeded.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import select

from pacsmigrate.assess.stage import AssessOptions, run_assess
from pacsmigrate.ledger import repo
from pacsmigrate.ledger.db import open_ledger
from pacsmigrate.ledger.models import Instance, Study
from pacsmigrate.testing.dirty import DirtyCorpus, generate_dirty_hospital
from pacsmigrate.testing.orthanc import OrthancServer, running_orthanc
from tests.conftest import CALLING_AE, needs_orthanc, run_cli, set_setting

pytestmark = [needs_orthanc, pytest.mark.orthanc]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> DirtyCorpus:
    return generate_dirty_hospital(tmp_path_factory.mktemp("dirty") / "archive", seed=7)


@pytest.fixture(scope="module")
def orthanc(
    tmp_path_factory: pytest.TempPathFactory, corpus: DirtyCorpus
) -> Iterator[OrthancServer]:
    workdir = tmp_path_factory.mktemp("orthanc")
    with running_orthanc(
        workdir,
        aet="OLDPACS",
        modalities={CALLING_AE: ("127.0.0.1", 1)},
        options={"DefaultEncoding": "Utf8"},  # else Orthanc's QIDO drops non-Latin-1 names
    ) as server:
        server.upload_files(corpus.header_files)
        yield server


def _held(orthanc: OrthancServer) -> tuple[set[str], set[str]]:
    studies, instances = set(), set()
    for item in orthanc.get("/instances", params={"expand": ""}):
        tags = orthanc.get(f"/instances/{item['ID']}/tags", params={"simplify": ""})
        studies.add(tags["StudyInstanceUID"])
        instances.add(tags["SOPInstanceUID"])
    return studies, instances


@pytest.mark.parametrize("kind", ["dimse", "dicomweb"])
def test_inventory_and_assess_of_a_pacs(
    kind: str, orthanc: OrthancServer, corpus: DirtyCorpus, tmp_path: Path
) -> None:
    source = (
        f"{orthanc.dimse_url}?calling={CALLING_AE}" if kind == "dimse" else orthanc.dicomweb_url
    )
    project = tmp_path / "project"
    assert run_cli("init", str(project), "--source", source).returncode == 0
    inventory = run_cli("-C", str(project), "inventory")
    assert inventory.returncode == 0, inventory.stderr

    ledger = open_ledger(f"sqlite:///{project}/ledger.sqlite")
    with ledger.session() as session:
        studies = set(session.scalars(select(Study.study_uid)))
        instances = set(session.scalars(select(Instance.sop_instance_uid)))
    assert (studies, instances) == _held(orthanc)

    with ledger.session() as session:
        options = AssessOptions(source_label=kind, retention_years=10, today=date(2026, 1, 1))
        run_assess(session, options)
        found: dict[str, set[str]] = {}
        for row in repo.findings_of(session):
            found.setdefault(row.kind, set()).add(row.subject)
    for seeded in (
        "patient_id_conflict",
        "patient_under_several_ids",
        "past_retention",
        "study_under_two_patients",
    ):
        assert found.get(seeded, set()) == corpus.expected[seeded], seeded
    # Orthanc keeps one of two identical copies; the UID in two studies stays in two
    assert found["sop_uid_in_two_places"] == {
        uid for uid in corpus.expected["sop_uid_in_two_places"] if uid.endswith(".47")
    }
    ledger.close()

    assess = run_cli("-C", str(project), "assess")
    assert assess.returncode == 0, assess.stderr
    assert (project / "reports" / "assessment.html").stat().st_size > 10_000


@pytest.fixture(scope="module")
def capped_orthanc(
    tmp_path_factory: pytest.TempPathFactory, corpus: DirtyCorpus
) -> Iterator[OrthancServer]:
    """Orthanc answering at most 10 matches per query (its LimitFindResults option)."""
    with running_orthanc(
        tmp_path_factory.mktemp("capped"),
        aet="OLDPACS",
        modalities={CALLING_AE: ("127.0.0.1", 1)},
        options={"DefaultEncoding": "Utf8", "LimitFindResults": 10},
    ) as server:
        server.upload_files(corpus.header_files)
        yield server


@pytest.mark.parametrize(
    ("kind", "find_cap"),
    [("dimse", None), ("dicomweb", "10")],
    ids=["dimse-cancel-status-detected", "qido-cap-configured"],
)
def test_a_capped_orthanc_yields_a_complete_inventory(
    kind: str, find_cap: str | None, capped_orthanc: OrthancServer, tmp_path: Path
) -> None:
    """Over DIMSE Orthanc ends a capped answer with 0xFE00, which we detect; its QIDO
    says nothing (10 + 1 rows), so the cap must be configured."""
    orthanc = capped_orthanc
    source = (
        f"{orthanc.dimse_url}?calling={CALLING_AE}"
        if kind == "dimse"
        else f"{orthanc.dicomweb_url}?page=4"
    )
    project = tmp_path / "project"
    assert run_cli("init", str(project), "--source", source).returncode == 0
    if find_cap:
        set_setting(project, "inventory", "find_cap", find_cap)
    inventory = run_cli("-C", str(project), "inventory")
    assert inventory.returncode == 0, inventory.stderr
    assert "capped answers split" in inventory.stdout
    ledger = open_ledger(f"sqlite:///{project}/ledger.sqlite")
    with ledger.session() as session:
        studies = set(session.scalars(select(Study.study_uid)))
        instances = set(session.scalars(select(Instance.sop_instance_uid)))
        truncated = repo.findings_of(session, "slice_truncated")
    ledger.close()
    held = _held(orthanc)
    assert len(held[0]) > 10  # the cap really hides studies from one query
    assert (studies, instances) == held
    assert truncated == []
