"""The DICOMweb endpoint: URLs, C-FIND -> QIDO-RS translation, a real Orthanc, faulty servers."""

from __future__ import annotations

import contextlib
import json
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pydicom
import pytest
import requests
from pydicom.dataset import Dataset

from pacsmigrate.endpoints.base import Endpoint
from pacsmigrate.endpoints.dicomweb import (
    DEFAULT_PAGE,
    DicomwebEndpoint,
    parse_dicomweb_url,
    qido_query,
)
from pacsmigrate.errors import ConfigError, PeerUnreachable, ProtocolError, TransientError
from pacsmigrate.testing.hospital import GeneratedInstance
from pacsmigrate.testing.orthanc import OrthancServer, free_port, running_orthanc
from tests.conftest import needs_orthanc


def _query(level: str, **keys: Any) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    ds.SpecificCharacterSet = "ISO_IR 192"
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


def _study_query(**keys: Any) -> Dataset:
    return _query("STUDY", StudyInstanceUID="", **keys)


# -- endpoint URLs (no server) -------------------------------------------------


@pytest.mark.parametrize(
    ("url", "base_url", "page"),
    [
        ("dicomweb+https://pacs.example.org/dicom-web", "https://pacs.example.org/dicom-web", 1000),
        (
            "dicomweb+https://pacs.example.org:8443/qido/",
            "https://pacs.example.org:8443/qido",
            1000,
        ),
        ("dicomweb+http://127.0.0.1:8042/dicom-web?page=50", "http://127.0.0.1:8042/dicom-web", 50),
        ("dicomweb+http://127.1.2.3/dicom-web", "http://127.1.2.3/dicom-web", 1000),
        ("dicomweb+http://localhost:8042/dicom-web", "http://localhost:8042/dicom-web", 1000),
        ("dicomweb+http://[::1]:8042/dicom-web", "http://[::1]:8042/dicom-web", 1000),
    ],
    ids=["https", "https-port", "http-loopback-page", "http-127/8", "http-localhost", "http-ipv6"],
)
def test_url_accepted(url: str, base_url: str, page: int) -> None:
    address = parse_dicomweb_url(url)
    assert address.base_url == base_url
    assert address.label == base_url
    assert address.page == page
    assert DEFAULT_PAGE == 1000


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("dicomweb+http://pacs.example.org/dicom-web", "use dicomweb+https://"),
        ("dicomweb+http://192.0.2.10/dicom-web", "use dicomweb+https://"),
        ("dicomweb+https://pacs.example.org/dicom-web?pagesize=10", "valid parameters: page"),
        ("dicomweb+https://pacs.example.org/dicom-web?page=0", "page must be a positive"),
        ("dicomweb+https://pacs.example.org/dicom-web?page=-5", "page must be a positive"),
        ("dicomweb+https://pacs.example.org/dicom-web?page=ten", "page must be a positive"),
        ("dicomweb+https://pacs.example.org/dicom-web?page=", "page must be a positive"),
        ("https://pacs.example.org/dicom-web", "dicomweb+https://host"),
        ("dicomweb+https:///dicom-web", "needs a host"),
        ("dicomweb+https://pacs.example.org:99999/dicom-web", "invalid port"),
        ("dicomweb+https://user:secret@pacs.example.org/dicom-web", "holds credentials"),
    ],
    ids=[
        "http-public-host",
        "http-public-ip",
        "unknown-parameter",
        "page-zero",
        "page-negative",
        "page-text",
        "page-empty",
        "wrong-scheme",
        "no-host",
        "bad-port",
        "credentials",
    ],
)
def test_url_refused(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_dicomweb_url(url)


# -- C-FIND identifier -> QIDO-RS (no server) -------------------------------------


def test_identifier_becomes_includefields_and_matching_keys() -> None:
    identifier = _study_query(
        PatientName="DOE*", StudyDate="20200101-20201231", ModalitiesInStudy=["CT", "SR"]
    )
    identifier.NumberOfStudyRelatedInstances = ""
    query = qido_query(identifier)
    assert query.resource == "studies"
    assert sorted(query.fields) == ["00080020", "00080061", "00100010", "0020000D", "00201208"]
    assert query.filters == {
        "00100010": "DOE*",
        "00080020": "20200101-20201231",
        "00080061": "CT,SR",  # QIDO-RS lists values with commas; a backslash matches nothing
    }


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
def test_path_uids_and_uid_lists() -> None:
    series = qido_query(_query("SERIES", StudyInstanceUID="1.2.3", SeriesInstanceUID=""))
    assert (series.resource, series.study_uid, series.filters) == (
        "studies/{study}/series",
        "1.2.3",
        {},
    )
    image = qido_query(
        _query("IMAGE", StudyInstanceUID="1.2.3", SeriesInstanceUID="1.2.3.4", SOPInstanceUID="")
    )
    assert image.resource == "studies/{study}/series/{series}/instances"
    assert (image.study_uid, image.series_uid, image.fields) == ("1.2.3", "1.2.3.4", ["00080018"])
    listed = qido_query(_query("STUDY", StudyInstanceUID=["1.2.3", "1.2.4"]))
    assert listed.filters == {"0020000D": "1.2.3,1.2.4"}
    odd = qido_query(_query("SERIES", StudyInstanceUID="1.2.3 x", SeriesInstanceUID=""))
    assert odd.study_uid is None and odd.filters == {"0020000D": "1.2.3 x"}


def test_patient_level_is_refused() -> None:
    with pytest.raises(ValueError, match="STUDY, SERIES, IMAGE"):
        qido_query(_query("PATIENT", PatientID=""))


def test_endpoint_protocol_and_capabilities() -> None:
    endpoint = DicomwebEndpoint(parse_dicomweb_url("dicomweb+https://pacs.example.org/dicom-web"))
    assert isinstance(endpoint, Endpoint)
    assert endpoint.capabilities.can_query and not endpoint.capabilities.can_retrieve
    assert not endpoint.capabilities.can_store and not endpoint.capabilities.can_delete
    with pytest.raises(ConfigError, match="does not migrate"):
        endpoint.retrieve(_study_query(), lambda _: 0, [])
    with pytest.raises(ConfigError, match="does not migrate"):
        endpoint.store_session([])


def test_echo_on_a_closed_port_is_unreachable() -> None:
    port = free_port()
    endpoint = DicomwebEndpoint(parse_dicomweb_url(f"dicomweb+http://127.0.0.1:{port}/dicom-web"))
    with pytest.raises(PeerUnreachable, match=f"127.0.0.1:{port}.*Connection refused"):
        endpoint.echo()
    with pytest.raises(PeerUnreachable):
        list(endpoint.find(_study_query()))


# -- faulty servers on loopback (no Orthanc) ---------------------------------------

Reply = tuple[int, dict[str, str], bytes] | None  # None: close without answering


@dataclass
class FakeQido:
    """A loopback HTTP server answering each GET with ``reply(path, query)``."""

    reply: Callable[[str, dict[str, list[str]]], Reply]
    page: int = 3
    timeout: float = 5.0
    port: int = 0
    requests: list[str] = field(default_factory=list)

    @property
    def endpoint(self) -> DicomwebEndpoint:
        url = f"dicomweb+http://127.0.0.1:{self.port}/dicom-web?page={self.page}"
        return DicomwebEndpoint(parse_dicomweb_url(url), timeout=self.timeout)

    def handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                fake.requests.append(self.path)
                parts = urlsplit(self.path)
                answer = fake.reply(parts.path, parse_qs(parts.query))
                if answer is None:
                    self.close_connection = True
                    return
                with contextlib.suppress(OSError):  # the client may have given up
                    self._answer(*answer)

            def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
                self.send_response(status)
                for name, value in {"Content-Length": str(len(body)), **headers}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        return Handler


Serve = Callable[..., FakeQido]


@pytest.fixture
def fake_qido() -> Iterator[Serve]:
    """``serve(reply, page=N, timeout=T)`` starts a fake QIDO-RS server on loopback."""
    servers: list[ThreadingHTTPServer] = []

    def serve(reply: Callable[..., Reply], **options: Any) -> FakeQido:
        fake = FakeQido(reply, **options)
        server = ThreadingHTTPServer(("127.0.0.1", 0), fake.handler())
        fake.port = server.server_port
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return fake

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


def _json(rows: list[dict[str, Any]], headers: dict[str, str] | None = None) -> Reply:
    return (
        200,
        {"Content-Type": "application/dicom+json", **(headers or {})},
        json.dumps(rows).encode(),
    )


def _study_rows(count: int) -> list[dict[str, Any]]:
    return [{"0020000D": {"vr": "UI", "Value": [f"1.2.3.{n}"]}} for n in range(count)]


def _paged(rows: list[dict[str, Any]], query: dict[str, list[str]]) -> list[dict[str, Any]]:
    offset = int(query.get("offset", ["0"])[0])
    limit = int(query["limit"][0]) if "limit" in query else len(rows)
    return rows[offset : offset + limit]


def _uids(endpoint: DicomwebEndpoint) -> list[str]:
    return [str(match.StudyInstanceUID) for match in endpoint.find(_study_query())]


@pytest.mark.parametrize(
    ("status", "error", "message"),
    [
        (503, TransientError, "HTTP 503"),
        (502, TransientError, "HTTP 502"),
        (504, TransientError, "HTTP 504"),
        (401, ConfigError, "refused with HTTP 401"),
        (403, ConfigError, "refused with HTTP 403"),
        (500, ProtocolError, "HTTP 500.*database is on fire"),
        (404, ProtocolError, "HTTP 404.*check the path"),
    ],
    ids=["503", "502", "504", "401", "403", "500", "404"],
)
def test_http_statuses_become_errors(
    fake_qido: Serve, status: int, error: type[Exception], message: str
) -> None:
    fake = fake_qido(lambda path, query: (status, {}, b"the database is on fire"))
    with pytest.raises(error, match=message):
        _uids(fake.endpoint)
    assert len(fake.requests) == 1  # no retries inside


def test_echo_names_refusal_and_not_json(fake_qido: Serve) -> None:
    refusing = fake_qido(lambda path, query: (401, {}, b""))
    with pytest.raises(ConfigError, match="401"):
        refusing.endpoint.echo()
    html = fake_qido(lambda path, query: (200, {"Content-Type": "text/html"}, b"<html>hi</html>"))
    with pytest.raises(ProtocolError, match="not DICOM JSON"):
        html.endpoint.echo()
    assert html.requests == ["/dicom-web/studies?limit=1"]


def test_dropped_connection_and_timeout_are_transient(
    fake_qido: Serve,
) -> None:
    dropping = fake_qido(lambda path, query: None)
    with pytest.raises(TransientError, match="connection lost"):
        _uids(dropping.endpoint)
    answer = threading.Event()  # the server answers only when the test is done

    def stall(path: str, query: dict[str, list[str]]) -> Reply:
        answer.wait(10)
        return _json([])

    slow = fake_qido(stall, timeout=0.3).endpoint
    try:
        with pytest.raises(TransientError, match="timed out"):
            _uids(slow)
        with pytest.raises(PeerUnreachable, match="Check the host"):
            slow.echo()
    finally:
        answer.set()


def test_wildcards_and_lists_are_sent_unencoded(
    fake_qido: Serve,
) -> None:
    """Orthanc 1.10 does not percent-decode QIDO-RS values: DOE%2A matches nothing there."""
    fake = fake_qido(lambda path, query: _json([]))
    query = _study_query(PatientName="DOE*", PatientID="PM?", ModalitiesInStudy=["CT", "SR"])
    assert list(fake.endpoint.find(query)) == []
    (sent,) = fake.requests
    assert "00100010=DOE*&" in sent and "00100020=PM?&" in sent and "00080061=CT,SR&" in sent


def test_server_that_ignores_offset_is_an_error(fake_qido: Serve) -> None:
    rows = _study_rows(10)
    fake = fake_qido(lambda path, query: _json(rows[:3]), page=3)
    with pytest.raises(ProtocolError, match="ignores offset"):
        _uids(fake.endpoint)


def test_server_capping_pages_with_a_warning_is_paged_through(
    fake_qido: Serve,
) -> None:
    rows = _study_rows(7)
    warning = {"Warning": '299 qido: "There are additional results that can be requested"'}

    def capped(path: str, query: dict[str, list[str]]) -> Reply:
        page = _paged(rows, {**query, "limit": ["2"]})  # never more than 2 rows per answer
        offset = int(query["offset"][0])
        return _json(page, warning if offset + len(page) < len(rows) else None)

    fake = fake_qido(capped, page=5)
    assert _uids(fake.endpoint) == [f"1.2.3.{n}" for n in range(7)]
    assert len(fake.requests) == 4  # 2 + 2 + 2 + 1 rows


def test_empty_page_after_full_one_is_checked(fake_qido: Serve) -> None:
    """Orthanc 1.10 answers offset > 0 with nothing when ModalitiesInStudy is a key."""
    rows = _study_rows(8)

    def broken_offset(path: str, query: dict[str, list[str]]) -> Reply:
        limit = int(query["limit"][0]) if "limit" in query else len(rows)
        return _json(rows[:limit][int(query.get("offset", ["0"])[0]) :])

    broken = fake_qido(broken_offset, page=3)
    assert _uids(broken.endpoint) == [f"1.2.3.{n}" for n in range(8)]
    assert len(broken.requests) == 4  # 3 rows, 0 rows, the probe, everything in one request
    exact = fake_qido(lambda path, query: _json(_paged(rows[:6], query)), page=3)
    assert _uids(exact.endpoint) == [f"1.2.3.{n}" for n in range(6)]
    assert len(exact.requests) == 4  # 3, 3, 0 rows, then the probe confirms the end


# -- a real Orthanc ------------------------------------------------------------------


@dataclass
class Truth:
    """What the generated files say, read back from their headers by pydicom."""

    headers: list[Dataset]

    def studies(self, keep: Callable[[Dataset], bool] = lambda ds: True) -> set[str]:
        return {str(ds.StudyInstanceUID) for ds in self.headers if keep(ds)}

    def of_study(self, study_uid: str) -> list[Dataset]:
        return [ds for ds in self.headers if ds.StudyInstanceUID == study_uid]

    def modalities(self, study_uid: str) -> set[str]:
        return {str(ds.Modality) for ds in self.of_study(study_uid)}


@dataclass
class Source:
    server: OrthancServer
    truth: Truth

    def endpoint(self, page: int | None = None, **kwargs: Any) -> DicomwebEndpoint:
        url = self.server.dicomweb_url + (f"?page={page}" if page else "")
        return DicomwebEndpoint(parse_dicomweb_url(url), **kwargs)


@pytest.fixture(scope="module")
def source(
    tmp_path_factory: pytest.TempPathFactory, hospital: list[GeneratedInstance]
) -> Iterator[Source]:
    """One Orthanc holding the generated hospital.

    DefaultEncoding Utf8: with Orthanc's default (Latin1) its QIDO-RS answers
    are transcoded to ISO_IR 100 and lose every name outside Latin-1 (seen:
    Cyrillic kept only its Latin look-alike letters, Greek came back empty).
    """
    headers = [pydicom.dcmread(item.path, stop_before_pixels=True) for item in hospital]
    workdir = tmp_path_factory.mktemp("dicomweb")
    with running_orthanc(workdir, options={"DefaultEncoding": "Utf8"}) as server:
        server.upload_files([item.path for item in hospital])
        yield Source(server, Truth(headers))


def _orthanc(test: Callable[..., None]) -> Callable[..., None]:
    """Mark a test that needs the Orthanc server (skipped where it is not installed)."""
    marked: Callable[..., None] = needs_orthanc(pytest.mark.orthanc(test))
    return marked


def _counting_sessions() -> tuple[Callable[[], requests.Session], list[str], list[int]]:
    """A session factory whose sessions record each request URL."""
    urls: list[str] = []
    made: list[int] = []

    def factory() -> requests.Session:
        session = requests.Session()
        session.hooks["response"].append(lambda response, *a, **k: urls.append(response.url))
        made.append(1)
        return session

    return factory, urls, made


@_orthanc
def test_echo_and_wrong_path(source: Source) -> None:
    source.endpoint().echo()
    wrong = DicomwebEndpoint(parse_dicomweb_url(source.server.dicomweb_url + "-nope"))
    with pytest.raises(ProtocolError, match="404"):
        wrong.echo()


@_orthanc
def test_universal_study_find_returns_every_study(source: Source) -> None:
    uids = _uids(source.endpoint())
    assert len(uids) == len(set(uids))
    assert set(uids) == source.truth.studies()


@_orthanc
def test_small_pages_give_the_same_studies_in_several_requests(source: Source) -> None:
    factory, urls, made = _counting_sessions()
    endpoint = source.endpoint(page=3, session_factory=factory)
    with endpoint.query_session() as find:
        first = [str(m.StudyInstanceUID) for m in find(_study_query())]
        second = [str(m.StudyInstanceUID) for m in find(_study_query())]
    studies = len(source.truth.studies())
    assert len(first) == len(set(first)) == studies
    assert set(first) == set(second) == source.truth.studies()
    assert len(urls) == 2 * (studies // 3 + 1)  # full pages, then a short one
    offsets = [parse_qs(urlsplit(url).query)["offset"][0] for url in urls[: len(urls) // 2]]
    assert offsets == [str(3 * n) for n in range(studies // 3 + 1)]
    assert all(parse_qs(urlsplit(url).query)["limit"] == ["3"] for url in urls)
    assert len(made) == 1  # one keep-alive session for the whole query session


DATE_RANGES = [
    ("20170101-20201231", lambda d: "20170101" <= d <= "20201231"),
    ("-20170101", lambda d: d <= "20170101"),
    ("20220101-", lambda d: d >= "20220101"),
    ("20150228", lambda d: d == "20150228"),
]


@_orthanc
@pytest.mark.parametrize(("study_date", "within"), DATE_RANGES, ids=[r[0] for r in DATE_RANGES])
@pytest.mark.parametrize("page", [3, DEFAULT_PAGE], ids=["page3", "page1000"])
def test_study_date_range(
    source: Source, study_date: str, within: Callable[[str], bool], page: int
) -> None:
    expected = source.truth.studies(lambda ds: within(str(ds.StudyDate)))
    assert 0 < len(expected) < len(source.truth.studies())
    matches = list(source.endpoint(page=page).find(_study_query(StudyDate=study_date)))
    assert {str(m.StudyInstanceUID) for m in matches} == expected
    assert all(within(str(m.StudyDate)) for m in matches)


MODALITIES = [("CT", {"CT"}), (["CT", "SR"], {"CT", "SR"}), ("DOC", {"DOC"})]


@_orthanc
@pytest.mark.parametrize(("value", "wanted"), MODALITIES, ids=["CT", "CT-or-SR", "DOC"])
@pytest.mark.parametrize("page", [3, DEFAULT_PAGE], ids=["page3", "page1000"])
def test_modalities_in_study(source: Source, value: Any, wanted: set[str], page: int) -> None:
    """With page=3 this also covers Orthanc's empty pages past offset 0 for this key."""
    truth = source.truth
    expected = {uid for uid in truth.studies() if truth.modalities(uid) & wanted}
    assert 0 < len(expected) < len(truth.studies())
    uids = _uids_of(source.endpoint(page=page).find(_study_query(ModalitiesInStudy=value)))
    assert sorted(uids) == sorted(expected)


def _values(value: Any) -> set[str]:
    """A CS value from DICOM JSON: one value is a str, several a MultiValue."""
    return {value} if isinstance(value, str) else {str(item) for item in value}


def _uids_of(matches: Iterator[Dataset]) -> list[str]:
    return [str(m.StudyInstanceUID) for m in matches]


@_orthanc
def test_patient_name_wildcard(source: Source) -> None:
    expected = source.truth.studies(lambda ds: str(ds.PatientName).startswith("DOE"))
    assert 0 < len(expected) < len(source.truth.studies())
    assert set(_uids_of(source.endpoint().find(_study_query(PatientName="DOE*")))) == expected


@_orthanc
def test_study_attributes_match_the_files(source: Source) -> None:
    """Counts, modalities, birth dates and non-ASCII names as pydicom decodes the files."""
    query = _study_query(
        PatientName="",
        PatientBirthDate="",
        ModalitiesInStudy="",
        NumberOfStudyRelatedInstances="",
    )
    matches = list(source.endpoint().find(query))
    assert len(matches) == len(source.truth.studies())
    for match in matches:
        files = source.truth.of_study(str(match.StudyInstanceUID))
        assert int(match.NumberOfStudyRelatedInstances) == len(files)
        assert _values(match.ModalitiesInStudy) == {str(ds.Modality) for ds in files}
        assert match.PatientBirthDate == files[0].PatientBirthDate
        assert str(match.PatientName) == str(files[0].PatientName)
        assert match.QueryRetrieveLevel == "STUDY"
    assert any(not str(m.PatientName).isascii() for m in matches)


@_orthanc
def test_series_and_image_levels_match_the_files(source: Source) -> None:
    truth = source.truth
    study_uid = max(
        truth.studies(), key=lambda uid: len({ds.SeriesInstanceUID for ds in truth.of_study(uid)})
    )
    files = truth.of_study(study_uid)
    with source.endpoint(page=2).query_session() as find:
        series = list(
            find(
                _query(
                    "SERIES",
                    StudyInstanceUID=study_uid,
                    SeriesInstanceUID="",
                    Modality="",
                    SeriesNumber="",
                )
            )
        )
        assert {(str(s.SeriesInstanceUID), s.Modality, int(s.SeriesNumber)) for s in series} == {
            (str(ds.SeriesInstanceUID), ds.Modality, int(ds.SeriesNumber)) for ds in files
        }
        assert len(series) > 1
        for one in series:
            images = list(
                find(
                    _query(
                        "IMAGE",
                        StudyInstanceUID=study_uid,
                        SeriesInstanceUID=one.SeriesInstanceUID,
                        SOPInstanceUID="",
                        SOPClassUID="",
                        InstanceNumber="",
                    )
                )
            )
            expected = {
                (str(ds.SOPInstanceUID), str(ds.SOPClassUID), int(ds.InstanceNumber))
                for ds in files
                if ds.SeriesInstanceUID == one.SeriesInstanceUID
            }
            got = {
                (str(i.SOPInstanceUID), str(i.SOPClassUID), int(i.InstanceNumber)) for i in images
            }
            assert len(images) == len(got) and got == expected
