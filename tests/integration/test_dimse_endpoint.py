"""The DIMSE endpoint against a real Orthanc: association reuse loses nothing."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from pacsmigrate.endpoints.base import DimseAddress
from pacsmigrate.endpoints.dimse import DimseEndpoint
from pacsmigrate.testing.hospital import GeneratedInstance
from pacsmigrate.testing.orthanc import running_orthanc
from pacsmigrate.verify.target import target_sop_uids
from tests.conftest import needs_orthanc

pytestmark = [needs_orthanc, pytest.mark.orthanc]


def _studies(find: object) -> list[str]:
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = ""
    return [str(m.StudyInstanceUID) for m in find(query)]  # type: ignore[operator]


@contextmanager
def _busy_threads(count: int) -> Iterator[None]:
    """Threads that compete for the GIL, as worker threads do in a migration;
    they widen the race window so the test sees it on a quiet machine too."""
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            sum(range(1000))

    threads = [threading.Thread(target=spin, daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        for thread in threads:
            thread.join()


def test_many_queries_on_one_association_lose_no_match(
    tmp_path: Path, hospital: list[GeneratedInstance]
) -> None:
    """pynetdicom's reactor thread could steal replies on a reused association
    (lost C-FIND matches, stalled C-STORE); 3-6 passes in 20 lost matches before
    the guard in endpoints/dimse.py."""
    expected: dict[str, set[str]] = {}
    for item in hospital:
        expected.setdefault(item.study_uid, set()).add(item.sop_instance_uid)
    with running_orthanc(tmp_path / "orthanc", aet="OLDPACS") as server:
        server.upload_files([item.path for item in hospital])
        endpoint = DimseEndpoint(DimseAddress("OLDPACS", "127.0.0.1", server.dicom_port, "TEST"))
        with _busy_threads(2), endpoint.query_session() as find:
            for _ in range(15):
                assert sorted(_studies(find)) == sorted(expected)
                for study_uid, sop_uids in expected.items():
                    assert target_sop_uids(find, study_uid) == sop_uids
