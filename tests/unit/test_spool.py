"""The spool: received bytes kept as received, hashed, and waited for."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

from pydicom import dcmread
from pydicom.data import get_testdata_file
from pynetdicom.dsutils import split_dataset

from pacsmigrate.endpoints.base import ReceivedInstance, RetrieveResult
from pacsmigrate.transfer.spool import StudySpool, hash_dataset


def _received(tmp_path: Path, name: str = "CT_small.dcm") -> ReceivedInstance:
    source = Path(str(get_testdata_file(name)))
    path = tmp_path / f"incoming-{name}"
    path.write_bytes(source.read_bytes())
    ds = dcmread(path, stop_before_pixels=True)
    return ReceivedInstance(
        path, str(ds.SOPClassUID), str(ds.SOPInstanceUID), str(ds.file_meta.TransferSyntaxUID)
    )


def test_hash_covers_the_data_set_bytes_only(tmp_path: Path) -> None:
    received = _received(tmp_path)
    _meta, offset = split_dataset(received.path)
    body = received.path.read_bytes()[offset:]
    assert hash_dataset(received.path) == (len(body), hashlib.sha256(body).hexdigest())


def test_sink_moves_hashes_and_answers_success(tmp_path: Path) -> None:
    received = _received(tmp_path)
    original = received.path.read_bytes()
    spool = StudySpool(tmp_path / "study", [received.sop_instance_uid])
    assert spool.sink(received) == 0x0000
    spooled = spool.received[received.sop_instance_uid]
    assert not received.path.exists()
    assert spooled.path.read_bytes() == original
    assert spooled.sha256 == hash_dataset(spooled.path)[1]
    assert spool.missing() == set()


def test_wait_ends_a_quiet_period_after_the_last_arrival(tmp_path: Path) -> None:
    received = _received(tmp_path)
    spool = StudySpool(tmp_path / "study", [received.sop_instance_uid, "1.2.3.missing"])
    arrival = threading.Timer(0.2, spool.sink, args=(received,))
    started = time.monotonic()
    arrival.start()
    missing = spool.wait_complete(quiet_period=1.0)
    elapsed = time.monotonic() - started
    arrival.join()
    assert missing == {"1.2.3.missing"}
    # the late arrival restarted the quiet period: at least 0.2 s + 1.0 s
    assert elapsed >= 1.15


def test_discard_keeps_what_it_is_told(tmp_path: Path) -> None:
    first, second = _received(tmp_path, "CT_small.dcm"), _received(tmp_path, "MR_small.dcm")
    spool = StudySpool(tmp_path / "study", [first.sop_instance_uid, second.sop_instance_uid])
    spool.sink(first)
    spool.sink(second)
    spool.discard(keep=[second.sop_instance_uid])
    assert not spool.received[first.sop_instance_uid].path.exists()
    assert spool.received[second.sop_instance_uid].path.exists()


def test_nothing_sent_only_for_failures_without_suboperations() -> None:
    assert RetrieveResult(0xC000, 0, 0, 0).nothing_sent
    assert RetrieveResult(0xA801, 0, 0, 0).nothing_sent
    assert not RetrieveResult(0x0000, 0, 0, 0).nothing_sent
    assert not RetrieveResult(0xB000, 3, 1, 0).nothing_sent
    assert not RetrieveResult(0xA702, 2, 0, 0).nothing_sent
