"""Bad input gets a clear message and a documented exit code, never a traceback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from pacsmigrate.testing.hospital import GeneratedInstance
from pacsmigrate.testing.orthanc import OrthancServer, free_port, running_orthanc
from tests.conftest import CALLING_AE, needs_orthanc, run_cli


def _init(project: Path, source: str, target: str, scp_port: int | None = None) -> None:
    result = run_cli(
        "init",
        str(project),
        "--source",
        source,
        "--target",
        target,
        "--port",
        str(scp_port or free_port()),
    )
    assert result.returncode == 0, result.stderr


def _assert_user_error(result: object, code: int, *needles: str) -> None:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)  # type: ignore[attr-defined]
    text = result.stderr  # type: ignore[attr-defined]
    assert "Traceback" not in text
    for needle in needles:
        assert needle in text, text


def test_unknown_config_key_names_it_and_suggests(tmp_path: Path) -> None:
    _init(tmp_path, "dimse://A@127.0.0.1:1", "dimse://B@127.0.0.1:2")
    path = tmp_path / "pacsmigrate.toml"
    path.write_text(_in_migrate_section(path.read_text(), "workers = 4", "worker = 4"))
    _assert_user_error(
        run_cli("-C", str(tmp_path), "status"),
        2,
        "'migrate.worker'",
        "did you mean 'migrate.workers'",
    )


def test_wrongly_typed_setting(tmp_path: Path) -> None:
    _init(tmp_path, "dimse://A@127.0.0.1:1", "dimse://B@127.0.0.1:2")
    path = tmp_path / "pacsmigrate.toml"
    path.write_text(_in_migrate_section(path.read_text(), "workers = 4", 'workers = "many"'))
    _assert_user_error(run_cli("-C", str(tmp_path), "status"), 2, "'migrate.workers'", "int")


def test_missing_project_says_run_init(tmp_path: Path) -> None:
    _assert_user_error(run_cli("-C", str(tmp_path), "status"), 2, "pacsmigrate init")


def test_bad_url_is_refused_at_init(tmp_path: Path) -> None:
    result = run_cli(
        "init",
        str(tmp_path),
        "--source",
        "dimse://127.0.0.1:104",
        "--target",
        "dimse://B@127.0.0.1:2",
    )
    _assert_user_error(result, 2, "called AE title")
    assert not (tmp_path / "pacsmigrate.toml").exists()


def test_unreachable_source(tmp_path: Path) -> None:
    closed = free_port()
    _init(tmp_path, f"dimse://OLDPACS@127.0.0.1:{closed}", f"dimse://NEWPACS@127.0.0.1:{closed}")
    _assert_user_error(
        run_cli("-C", str(tmp_path), "preflight"),
        3,
        "cannot connect to OLDPACS@127.0.0.1",
        "Check that the peer runs",
    )


@pytest.fixture
def orthanc_without_us(
    tmp_path: Path, hospital: list[GeneratedInstance]
) -> Iterator[OrthancServer]:
    """An Orthanc holding one instance that does not know our AE title."""
    with running_orthanc(tmp_path / "orthanc", aet="OLDPACS", modalities={}) as server:
        server.upload(hospital[0].path.read_bytes())
        yield server


@needs_orthanc
def test_wrong_called_ae_is_rejected(tmp_path: Path, orthanc_without_us: OrthancServer) -> None:
    wrong = f"dimse://WRONGAE@127.0.0.1:{orthanc_without_us.dicom_port}"
    _init(tmp_path / "p", wrong, orthanc_without_us.dimse_url)
    _assert_user_error(
        run_cli("-C", str(tmp_path / "p"), "preflight"), 4, "rejected the association", "'WRONGAE'"
    )


@needs_orthanc
def test_orthanc_that_does_not_know_us(tmp_path: Path, orthanc_without_us: OrthancServer) -> None:
    url = f"{orthanc_without_us.dimse_url}?calling={CALLING_AE}"
    port = free_port()
    _init(tmp_path / "p", url, url, port)
    _assert_user_error(
        run_cli("-C", str(tmp_path / "p"), "preflight"),
        5,
        f"register AE title '{CALLING_AE}' at host 127.0.0.1, port {port}",
    )


@pytest.fixture
def a801_source() -> Iterator[int]:
    """A pynetdicom Q/R SCP that finds one instance and answers every C-MOVE with 0xA801."""

    def on_find(event: evt.Event) -> Iterator[tuple[int, Dataset | None]]:
        match = Dataset()
        level = event.identifier.QueryRetrieveLevel  # type: ignore[attr-defined]
        match.QueryRetrieveLevel = level
        match.StudyInstanceUID = "1.2.3"
        match.SeriesInstanceUID = "1.2.3.4"
        match.SOPInstanceUID = "1.2.3.4.5"
        match.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        yield 0xFF00, match

    def on_move(event: evt.Event) -> Iterator[object]:
        yield None, None  # unknown destination: no address
        yield 0xA801, None

    ae = AE("MOVESCP")
    for context in (
        Verification,
        StudyRootQueryRetrieveInformationModelFind,
        StudyRootQueryRetrieveInformationModelMove,
    ):
        ae.add_supported_context(context)
    port = free_port()
    server = ae.start_server(
        ("127.0.0.1", port),
        block=False,
        evt_handlers=[(evt.EVT_C_FIND, on_find), (evt.EVT_C_MOVE, on_move)],
    )
    try:
        yield port
    finally:
        server.shutdown()


def test_move_destination_unknown_a801(tmp_path: Path, a801_source: int) -> None:
    url = f"dimse://MOVESCP@127.0.0.1:{a801_source}?calling={CALLING_AE}"
    port = free_port()
    _init(tmp_path, url, url, port)
    _assert_user_error(
        run_cli("-C", str(tmp_path), "preflight"),
        5,
        "0xA801",
        f"register AE title '{CALLING_AE}' at host 127.0.0.1, port {port}",
    )


def _in_migrate_section(text: str, old: str, new: str) -> str:
    head, migrate = text.split("[migrate]", 1)
    assert old in migrate
    return head + "[migrate]" + migrate.replace(old, new, 1)
