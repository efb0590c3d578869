"""A target that refuses one instance: the study is quarantined, the rest goes through.

The target is a pynetdicom Storage SCP started in the test. It accepts every
storage SOP class in every transfer syntax and answers 0xA900 (data set does
not match SOP class) for exactly one SOP Instance UID, success for the rest.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
from pynetdicom.dsutils import split_dataset
from sqlalchemy import select

import pacsmigrate.endpoints.dimse  # noqa: F401  (sets pynetdicom's chunked-dataset options)
from pacsmigrate.ledger.db import open_ledger
from pacsmigrate.ledger.models import Instance, Study
from pacsmigrate.testing.hospital import ENCAPSULATED_PDF_STORAGE, GeneratedInstance
from pacsmigrate.testing.orthanc import free_port
from tests.conftest import CALLING_AE, Peers, needs_orthanc, run_cli

pytestmark = [pytest.mark.orthanc, needs_orthanc, pytest.mark.timeout(120)]

REFUSAL = 0xA900


@dataclass
class RefusingTarget:
    """What the refusing SCP saw: SOP Instance UID -> SHA-256 of the data set bytes."""

    port: int
    refuse: str
    stored: dict[str, str] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_store(self, event: evt.Event) -> int:
        sop_uid = str(event.request.AffectedSOPInstanceUID)  # type: ignore[attr-defined]
        with self.lock:
            if sop_uid == self.refuse:
                self.refused.append(sop_uid)
                return REFUSAL
        path = Path(event.dataset_path)
        _meta, offset = split_dataset(path)
        digest = hashlib.sha256(path.read_bytes()[offset:]).hexdigest()
        with self.lock:
            self.stored[sop_uid] = digest
        return 0x0000


@contextmanager
def refusing_target(refuse: str) -> Iterator[RefusingTarget]:
    target = RefusingTarget(port=free_port(), refuse=refuse)
    ae = AE(ae_title="REFUSER")
    for context in AllStoragePresentationContexts:
        ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
    server = ae.start_server(
        ("127.0.0.1", target.port), block=False, evt_handlers=[(evt.EVT_C_STORE, target.on_store)]
    )
    try:
        yield target
    finally:
        server.shutdown()


def test_refused_instance_quarantines_its_study_only(
    peers: Peers, hospital: list[GeneratedInstance], tmp_path: Path
) -> None:
    pdf = next(i for i in hospital if i.sop_class_uid == ENCAPSULATED_PDF_STORAGE)
    others = {i.sop_instance_uid for i in hospital} - {pdf.sop_instance_uid}
    project = tmp_path / "project"
    p = str(project)

    with refusing_target(pdf.sop_instance_uid) as target:
        init = run_cli(
            "init",
            p,
            "--source",
            f"{peers.source.dimse_url}?calling={CALLING_AE}",
            "--target",
            f"dimse://REFUSER@127.0.0.1:{target.port}?calling={CALLING_AE}",
            "--ae-title",
            CALLING_AE,
            "--port",
            str(peers.scp_port),
        )
        assert init.returncode == 0, init.stderr
        inventory = run_cli("-C", p, "inventory")
        assert inventory.returncode == 0, inventory.stderr
        migrate = run_cli("-C", p, "migrate", "--workers", "3")
        output = f"stdout:\n{migrate.stdout}\nstderr:\n{migrate.stderr}"
        assert migrate.returncode == 1, output

        with target.lock:
            stored, refused = dict(target.stored), list(target.refused)

    assert refused == [pdf.sop_instance_uid]
    assert set(stored) == others

    ledger = open_ledger("sqlite:///" + str(project / "ledger.sqlite"))
    try:
        with ledger.session() as session:
            studies = {s.study_uid: s for s in session.scalars(select(Study))}
            instances = {i.sop_instance_uid: i for i in session.scalars(select(Instance))}
    finally:
        ledger.close()

    quarantined = studies[pdf.study_uid]
    assert quarantined.state == "quarantined"
    assert "0xA900" in quarantined.reason, quarantined.reason
    refused_row = instances[pdf.sop_instance_uid]
    assert refused_row.store_status == REFUSAL
    assert "0xA900" in refused_row.store_error, refused_row.store_error
    assert refused_row.stored_at is None
    other_studies = {i.study_uid for i in hospital} - {pdf.study_uid}
    states = {uid: s.state for uid, s in studies.items() if uid != pdf.study_uid}
    assert states == dict.fromkeys(other_studies, "transferred")
    for uid in others:
        row = instances[uid]
        assert (row.store_status, row.store_error) == (0x0000, ""), uid
        # The target received exactly the bytes our Storage SCP received.
        assert stored[uid] == row.sha256, uid

    report = run_cli("-C", p, "report")
    assert report.returncode == 1, report.stdout + report.stderr  # not every study verified
    data = json.loads((project / "reports" / "report.json").read_text(encoding="utf-8"))
    assert data["totals"]["instances_refused"] == 1
    assert data["studies_by_state"]["quarantined"] == 1
    failures = data["failures"]
    assert [f["study_uid"] for f in failures] == [pdf.study_uid], failures
    assert failures[0]["state"] == "quarantined"
    listed = {i["sop_instance_uid"]: i for i in failures[0]["instances"]}
    assert set(listed) == {pdf.sop_instance_uid}
    assert listed[pdf.sop_instance_uid]["store_status"] == "0xA900"
    assert "0xA900" in listed[pdf.sop_instance_uid]["store_error"]
