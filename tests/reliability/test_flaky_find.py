"""Inventory against a Q/R SCP that aborts the association in the middle of a crawl."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind,
    Verification,
)
from sqlalchemy import func, select

from pacsmigrate.endpoints.base import DimseAddress
from pacsmigrate.endpoints.dimse import DimseEndpoint, Timeouts
from pacsmigrate.inventory.crawl import run_inventory
from pacsmigrate.ledger.db import open_ledger
from pacsmigrate.ledger.models import Instance, Series, Study
from pacsmigrate.testing.orthanc import free_port

STUDIES = 5
SERIES_PER_STUDY = 2
IMAGES_PER_SERIES = 3


def _match(level: str, study: int, series: int = 0, image: int = 0) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    ds.StudyInstanceUID = f"1.2.826.0.1.3680043.8.498.1.{study}"
    ds.PatientID = f"P{study}"
    if level in ("SERIES", "IMAGE"):
        ds.SeriesInstanceUID = f"{ds.StudyInstanceUID}.{series}"
        ds.Modality = "CT"
    if level == "IMAGE":
        ds.SOPInstanceUID = f"{ds.SeriesInstanceUID}.{image}"
        ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    return ds


@pytest.fixture
def aborting_scp() -> Iterator[tuple[int, list[str]]]:
    """Answers study/series/image C-FINDs; aborts the association on the 3rd series query."""
    seen: list[str] = []

    def on_find(event: evt.Event) -> Iterator[tuple[int, Dataset | None]]:
        query = event.identifier  # type: ignore[attr-defined]
        level = str(query.QueryRetrieveLevel)
        seen.append(level)
        if level == "SERIES" and seen.count("SERIES") == 3:
            event.assoc.abort()
            return
        if level == "STUDY":
            for study in range(STUDIES):
                yield 0xFF00, _match("STUDY", study)
        elif level == "SERIES":
            study = int(str(query.StudyInstanceUID).rsplit(".", 1)[1])
            for series in range(SERIES_PER_STUDY):
                yield 0xFF00, _match("SERIES", study, series)
        else:
            study, series = (int(x) for x in str(query.SeriesInstanceUID).rsplit(".", 2)[1:])
            for image in range(IMAGES_PER_SERIES):
                yield 0xFF00, _match("IMAGE", study, series, image)

    ae = AE("FLAKY")
    ae.add_supported_context(Verification)
    ae.add_supported_context(StudyRootQueryRetrieveInformationModelFind)
    port = free_port()
    server = ae.start_server(
        ("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_FIND, on_find)]
    )
    try:
        yield port, seen
    finally:
        server.shutdown()


def test_inventory_survives_an_aborted_association(
    tmp_path: Path, aborting_scp: tuple[int, list[str]]
) -> None:
    port, seen = aborting_scp
    source = DimseEndpoint(DimseAddress("FLAKY", "127.0.0.1", port, "TEST"), Timeouts(dimse=10))
    ledger = open_ledger(f"sqlite:///{tmp_path}/ledger.sqlite")
    summary = run_inventory(source, ledger)
    assert seen.count("SERIES") == STUDIES + 1  # the aborted query was asked again
    expected_instances = STUDIES * SERIES_PER_STUDY * IMAGES_PER_SERIES
    assert summary.as_dict() == {
        "studies": STUDIES,
        "studies_new": STUDIES,
        "studies_changed": 0,
        "studies_unchanged": 0,
        "series": STUDIES * SERIES_PER_STUDY,
        "instances": expected_instances,
        "instances_new": expected_instances,
        "queries": 1,
        "slices_split": 0,
        "files": 0,
        "findings": 0,
        "studies_reopened": 0,
    }
    with ledger.session() as session:
        assert session.scalar(select(func.count()).select_from(Study)) == STUDIES
        assert session.scalar(select(func.count()).select_from(Series)) == STUDIES * 2
        assert session.scalar(select(func.count()).select_from(Instance)) == expected_instances
    ledger.close()
