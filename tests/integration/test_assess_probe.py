"""Assess asks the target, by association negotiation, what it will accept (FIELD-NOTES 10).

The target is a pynetdicom Storage SCP that accepts CT Image Storage in
Explicit VR Little Endian only; every other (SOP class, transfer syntax) pair
of the source must be reported, with its instance count.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.uid import UID, ExplicitVRLittleEndian
from pynetdicom import AE  # type: ignore[attr-defined]
from pynetdicom.sop_class import CTImageStorage, Verification  # type: ignore[attr-defined]
from sqlalchemy import select

from pacsmigrate.assess.stage import AssessOptions, run_assess
from pacsmigrate.endpoints.base import DimseAddress
from pacsmigrate.endpoints.dimse import DimseEndpoint, Timeouts
from pacsmigrate.endpoints.filesystem import FolderEndpoint
from pacsmigrate.inventory.files import run_folder_inventory
from pacsmigrate.ledger import repo
from pacsmigrate.ledger.db import open_ledger
from pacsmigrate.ledger.models import Instance
from pacsmigrate.testing.dirty import generate_dirty_hospital
from pacsmigrate.testing.orthanc import free_port


@pytest.fixture
def picky_target() -> Iterator[DimseEndpoint]:
    ae = AE("PICKY")
    ae.add_supported_context(Verification)
    ae.add_supported_context(CTImageStorage, [ExplicitVRLittleEndian])
    port = free_port()
    server = ae.start_server(("127.0.0.1", port), block=False)
    try:
        yield DimseEndpoint(DimseAddress("PICKY", "127.0.0.1", port, "TEST"), Timeouts())
    finally:
        server.shutdown()


def _name(uid: str) -> str:
    name = UID(uid).name
    return f"{uid} ({name})" if name and name != uid else uid


def test_pairs_the_target_refuses_are_reported_with_counts(
    tmp_path: Path, picky_target: DimseEndpoint
) -> None:
    corpus = generate_dirty_hospital(tmp_path / "archive")
    ledger = open_ledger(f"sqlite:///{tmp_path}/ledger.sqlite")
    run_folder_inventory(FolderEndpoint(corpus.root), ledger)
    with ledger.session() as session:
        pairs = Counter(
            session.execute(
                select(Instance.sop_class_uid, Instance.transfer_syntax_uid).where(
                    Instance.sop_class_uid != ""
                )
            ).all()
        )
        run_assess(session, AssessOptions(source_label="archive", target=picky_target))
        refused = {row.subject: row.count for row in repo.findings_of(session, "target_refuses")}
    expected = {
        f"{_name(sop)} in {_name(ts)}": count
        for (sop, ts), count in pairs.items()
        if (sop, ts) != (CTImageStorage, ExplicitVRLittleEndian)
    }
    assert len(pairs) > len(expected) >= 2  # the corpus has accepted and refused pairs
    assert refused == expected
