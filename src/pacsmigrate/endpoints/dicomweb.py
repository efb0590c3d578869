"""DICOMweb endpoints (dicomweb-client): QIDO-RS queries for inventory and assessment.

An endpoint is named ``dicomweb+https://host[:port]/path?page=N`` (plain
``dicomweb+http`` only on loopback). :meth:`DicomwebEndpoint.find` takes the
same C-FIND identifier as the DIMSE endpoint and answers with the same kind of
match datasets, so the inventory crawls either without knowing which.

Translation (PS3.18 8.3.4 and 10.6): every attribute of the identifier is
asked for with ``includefield``; every non-empty value is sent as a matching
key with the C-FIND matching syntax (ranges ``A-B``, wildcards ``*`` and
``?``); several values (DICOM's backslash) become QIDO's comma-separated list.
Answers are paged with ``limit`` and ``offset``. Retrieve (WADO-RS) and store
(STOW-RS) come later.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, NoReturn
from urllib.parse import parse_qs, urlsplit

import requests
from dicomweb_client.api import DICOMwebClient
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from requests.adapters import BaseAdapter
from requests.exceptions import ChunkedEncodingError
from urllib3.exceptions import NewConnectionError

from pacsmigrate.endpoints.base import Capabilities, InstanceSink, RetrieveResult
from pacsmigrate.errors import (
    ConfigError,
    PacsmigrateError,
    PeerUnreachable,
    ProtocolError,
    TransientError,
)

__all__ = [
    "DEFAULT_PAGE",
    "DicomwebAddress",
    "DicomwebEndpoint",
    "QidoQuery",
    "parse_dicomweb_url",
    "qido_query",
]

LOGGER = logging.getLogger(__name__)

# dicomweb-client logs UIDs at INFO and whole request URLs (query values, so
# patient names) and headers at DEBUG: keep PHI out of the logs (FIELD-NOTES 19).
logging.getLogger("dicomweb_client").setLevel(logging.WARNING)

#: Rows asked for per QIDO-RS request unless the URL says ``?page=N``.
DEFAULT_PAGE = 1000

Find = Callable[[Dataset], Iterator[Dataset]]
JsonDataset = dict[str, Any]

_SCHEMES = {"dicomweb+https": "https", "dicomweb+http": "http"}
_PARAMETERS = ("page",)
_NOT_MIGRATING = (
    "this version inventories and assesses DICOMweb sources but does not migrate"
    " from or to them yet (WADO-RS and STOW-RS come later); use a dimse:// endpoint"
)

# (0008,0052) QueryRetrieveLevel and (0008,0005) SpecificCharacterSet: C-FIND
# message parameters, not attributes to ask for or to match on.
_NOT_KEYS = frozenset({0x00080052, 0x00080005})
_STUDY_UID, _SERIES_UID = 0x0020000D, 0x0020000E
_RESOURCES = {"STUDY": "studies", "SERIES": "series", "IMAGE": "instances"}
_LEVELS = tuple(_RESOURCES)
# A UID that can go into a URL path as it is; any other is sent as a matching key.
_PATH_UID = re.compile(r"[0-9]+(\.[0-9]+)*")

_TRANSIENT_STATUSES = frozenset({408, 429, 502, 503, 504})
_REFUSED_STATUSES = frozenset({401, 403})
_EXCERPT = 200


# -- endpoint URLs ------------------------------------------------------------


@dataclass(frozen=True)
class DicomwebAddress:
    """Where the DICOMweb root is, and how many rows to ask for per request."""

    scheme: str  # "https" or "http"
    netloc: str  # host[:port] as written in the URL
    path: str  # the DICOMweb root, e.g. "/dicom-web" (no trailing slash)
    page: int = DEFAULT_PAGE

    @property
    def base_url(self) -> str:
        """The real http(s) URL of the DICOMweb root."""
        return f"{self.scheme}://{self.netloc}{self.path}"

    @property
    def label(self) -> str:
        return self.base_url


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _scheme(url: str, scheme: str) -> str:
    if scheme not in _SCHEMES:
        raise ConfigError(
            f"endpoint URL {url!r} has scheme {scheme!r}; a DICOMweb endpoint is"
            " dicomweb+https://host[:port]/path"
        )
    return _SCHEMES[scheme]


def _check_host(url: str, scheme: str, host: str | None, has_credentials: bool) -> None:
    if not host:
        raise ConfigError(f"endpoint URL {url!r} needs a host: dicomweb+https://host[:port]/path")
    if has_credentials:
        raise ConfigError(
            f"endpoint URL {url!r} holds credentials; this version does not send any:"
            " remove the user[:password]@ part"
        )
    if scheme == "http" and not _is_loopback(host):
        raise ConfigError(
            f"endpoint URL {url!r} would send queries (patient data) unencrypted to {host!r};"
            " use dicomweb+https:// (plain dicomweb+http:// is only for 127.0.0.1, ::1"
            " and localhost)"
        )


def _page(url: str, query: str) -> int:
    parameters = {key: values[-1] for key, values in parse_qs(query, True).items()}
    unknown = sorted(set(parameters) - set(_PARAMETERS))
    if unknown:
        raise ConfigError(
            f"endpoint URL {url!r} has unknown parameter {unknown[0]!r};"
            f" valid parameters: {', '.join(_PARAMETERS)}"
        )
    text = parameters.get("page", str(DEFAULT_PAGE))
    if not text.isascii() or not text.isdigit() or int(text) < 1:
        raise ConfigError(
            f"endpoint URL {url!r}: page must be a positive whole number of rows"
            f" per QIDO-RS request (default {DEFAULT_PAGE}), not {text!r}"
        )
    return int(text)


def parse_dicomweb_url(url: str) -> DicomwebAddress:
    """Parse ``dicomweb+https://host[:port]/path?page=N`` (``dicomweb+http`` on loopback)."""
    parts = urlsplit(url)
    scheme = _scheme(url, parts.scheme)
    _check_host(url, scheme, parts.hostname, parts.username is not None)
    try:
        parts.port  # noqa: B018 (validates the port)
    except ValueError as exc:
        raise ConfigError(f"endpoint URL {url!r} has an invalid port") from exc
    return DicomwebAddress(
        scheme=scheme,
        netloc=parts.netloc,
        path=parts.path.rstrip("/"),
        page=_page(url, parts.query),
    )


# -- C-FIND identifier -> QIDO-RS ---------------------------------------------


@dataclass(frozen=True)
class QidoQuery:
    """A C-FIND identifier as a QIDO-RS search: resource, includefields, matching keys."""

    level: str
    study_uid: str | None = None  # in the path: /studies/{study_uid}/...
    series_uid: str | None = None  # in the path: .../series/{series_uid}/instances
    fields: list[str] = field(default_factory=list)
    filters: dict[str, str] = field(default_factory=dict)

    @property
    def resource(self) -> str:
        """The resource searched, UIDs left out (for logs and messages)."""
        study = "studies/{study}/" if self.study_uid else ""
        series = "series/{series}/" if self.series_uid else ""
        return study + series + _RESOURCES[self.level]


def _key(element: DataElement) -> str:
    return f"{int(element.tag):08X}"


def _matching_value(element: DataElement) -> str:
    """The value as a QIDO-RS matching key: "" for universal matching."""
    value = element.value
    if element.VR == "SQ":
        if value:
            raise ValueError(
                f"sequence matching on {element.keyword or _key(element)} is not translated to"
                " QIDO-RS; ask for the sequence with an empty value"
            )
        return ""
    if value is None or isinstance(value, bytes):
        return ""
    if isinstance(value, MultiValue | list | tuple):
        return ",".join(str(item) for item in value if str(item))
    return str(value)


def _path_uid(identifier: Dataset, tag: int) -> str | None:
    """A single, well-formed UID to put in the path; None keeps it a matching key."""
    if tag not in identifier:
        return None
    value = identifier[tag].value
    return value if isinstance(value, str) and _PATH_UID.fullmatch(value) else None


def _path_uids(identifier: Dataset, level: str) -> tuple[str | None, str | None]:
    study = _path_uid(identifier, _STUDY_UID) if level != "STUDY" else None
    series = _path_uid(identifier, _SERIES_UID) if level == "IMAGE" and study else None
    return study, series


def qido_query(identifier: Dataset) -> QidoQuery:
    """Translate a Study Root C-FIND identifier (STUDY, SERIES or IMAGE level)."""
    level = str(identifier.get("QueryRetrieveLevel", "")).strip().upper()
    if level not in _LEVELS:
        raise ValueError(f"QIDO-RS searches levels {', '.join(_LEVELS)}, not {level!r}")
    study_uid, series_uid = _path_uids(identifier, level)
    in_path = {_STUDY_UID: study_uid, _SERIES_UID: series_uid}
    query = QidoQuery(level, study_uid, series_uid)
    for element in identifier:
        if int(element.tag) in _NOT_KEYS or in_path.get(int(element.tag)):
            continue
        query.fields.append(_key(element))
        value = _matching_value(element)
        if value:
            query.filters[_key(element)] = value
    return query


# -- HTTP failures -> pacsmigrate errors --------------------------------------


def _excerpt(response: requests.Response) -> str:
    text = " ".join(response.text.split())
    return text[:_EXCERPT] + ("..." if len(text) > _EXCERPT else "")


def _why(exc: BaseException) -> str:
    """The operating system's reason (e.g. "Connection refused"), no URL or query."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, OSError) and cause.strerror:
            return str(cause.strerror)
        cause = cause.__cause__ or cause.__context__
    return type(exc).__name__


def _http_error(response: requests.Response, where: str) -> PacsmigrateError:
    status = f"HTTP {response.status_code} {response.reason or ''}".strip()
    if response.status_code in _REFUSED_STATUSES:
        return ConfigError(
            f"{where} was refused with {status}; allow this client on the server"
            " (this version sends no credentials)"
        )
    if response.status_code in _TRANSIENT_STATUSES:
        return TransientError(f"{where} answered {status} (busy or unavailable); try again later")
    hint = "; check the path of the DICOMweb root in the URL" if response.status_code == 404 else ""
    return ProtocolError(f"{where} answered {status}: {_excerpt(response)!r}{hint}")


def _unreachable(exc: BaseException, where: str) -> PeerUnreachable:
    return PeerUnreachable(
        f"cannot reach {where}: {_why(exc)}. Check the host, the port and that the"
        " DICOMweb service runs and is reachable from this machine"
    )


def _request_error(exc: requests.RequestException, where: str, *, echo: bool) -> PacsmigrateError:
    """Classify a failed request: ``echo`` makes every connection failure fatal."""
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return _http_error(exc.response, where)
    if isinstance(exc, requests.JSONDecodeError):
        return ProtocolError(f"{where} answered with something that is not DICOM JSON")
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    if isinstance(reason, NewConnectionError) or (echo and isinstance(exc, requests.Timeout)):
        return _unreachable(exc, where)
    if isinstance(exc, requests.ConnectionError | requests.Timeout | ChunkedEncodingError):
        return TransientError(f"{where} failed: {_why(exc)} (connection lost or timed out)")
    return ProtocolError(f"{where} failed: {type(exc).__name__}")


# -- one request --------------------------------------------------------------

# Orthanc (1.10, DICOMweb plugin 1.7) hands QIDO-RS query values to the plugin
# without percent-decoding them (the plugin undoes only %2C), so the wildcard
# in "PatientName=DOE%2A" matches nothing. RFC 3986 allows these characters
# unencoded in a query and they mean the same to a server that decodes, so
# they are sent as they are. ("^" and non-ASCII must stay encoded: urllib3
# encodes them again, and Orthanc 1.10 then cannot match such values.)
_RAW_IN_QUERY = {"%2A": "*", "%3F": "?", "%2C": ","}


class _RawWildcards(BaseAdapter):
    """Sends ``*``, ``?`` and ``,`` unencoded in the query, then hands over to ``inner``."""

    def __init__(self, inner: BaseAdapter) -> None:
        super().__init__()
        self.inner = inner

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        base, mark, query = (request.url or "").partition("?")
        for encoded, char in _RAW_IN_QUERY.items():
            query = query.replace(encoded, char)
        request.url = base + mark + query
        return self.inner.send(request, *args, **kwargs)

    def close(self) -> None:
        self.inner.close()


def _prepare(session: requests.Session, warnings: list[str]) -> None:
    """Raw wildcards on every request; keep the Warning headers of the answers."""
    for prefix in ("https://", "http://"):
        session.mount(prefix, _RawWildcards(session.get_adapter(prefix)))
    session.hooks["response"].append(functools.partial(_note_warning, warnings))


@dataclass(frozen=True)
class _Client:
    """A dicomweb-client on one session, and the Warning headers its answers carried."""

    client: DICOMwebClient
    warnings: list[str]


def _note_warning(warnings: list[str], response: requests.Response, *_: Any, **__: Any) -> None:
    """Session hook: keep a response's Warning header (e.g. "more results available")."""
    if "Warning" in response.headers:
        warnings.append(response.headers["Warning"])


def _search_checked(
    connection: _Client, query: QidoQuery, where: str, limit: int | None, offset: int
) -> tuple[list[JsonDataset], bool]:
    """One request; failures as pacsmigrate errors, and whether a Warning came back."""
    connection.warnings.clear()
    try:
        rows = _search(connection.client, query, limit, offset)
    except requests.RequestException as exc:
        raise _request_error(exc, where, echo=False) from exc
    return rows, bool(connection.warnings)


def _search(
    client: DICOMwebClient, query: QidoQuery, limit: int | None, offset: int
) -> list[JsonDataset]:
    """One QIDO-RS request for ``query``'s resource."""
    fields, filters = query.fields or None, query.filters or None
    if query.level == "STUDY":
        return client.search_for_studies(
            limit=limit, offset=offset, fields=fields, search_filters=filters
        )
    if query.level == "SERIES":
        return client.search_for_series(
            query.study_uid, limit=limit, offset=offset, fields=fields, search_filters=filters
        )
    return client.search_for_instances(
        query.study_uid,
        query.series_uid,
        limit=limit,
        offset=offset,
        fields=fields,
        search_filters=filters,
    )


# -- paging -------------------------------------------------------------------

#: One QIDO-RS request: (limit, offset) -> (rows, whether the server said there are
#: more rows than it sent); limit None asks for every row.
Search = Callable[[int | None, int], tuple[list[JsonDataset], bool]]


class _Pages:
    """The rows of one search, paged with ``limit`` and ``offset`` until a page is short
    (and the server sent no Warning header saying more rows can be asked for).

    Checked, because a wrong page loses studies silently: a server that repeats
    the first page (ignores ``offset``) is an error, and an empty page after a
    full one is confirmed by asking for the last row seen again. Orthanc 1.10
    (DICOMweb plugin 1.7) answers every ``offset`` > 0 with nothing when
    ModalitiesInStudy is a matching key; then the rest comes in one request.
    """

    def __init__(self, search: Search, page: int, where: str) -> None:
        self.search = search
        self.page = page
        self.where = where
        self.first: JsonDataset | None = None  # first row of the first page
        self.last: JsonDataset | None = None  # last row of the last full page

    def __iter__(self) -> Iterator[JsonDataset]:
        offset = 0
        while True:
            rows, more = self.search(self.page, offset)
            if offset and not rows and not self._offset_works(offset):
                yield from self._rest(offset)
                return
            self._check_moved_on(rows, offset)
            yield from rows
            if not rows or (len(rows) != self.page and not more):
                self._check_limit(rows)
                return
            self.first, self.last = self.first or rows[0], rows[-1]
            offset += len(rows)

    def _check_moved_on(self, rows: list[JsonDataset], offset: int) -> None:
        if offset and rows and rows[0] == self.first:
            raise ProtocolError(
                f"{self.where} answered offset={offset} with the rows of offset 0: the server"
                " ignores offset. Set ?page= in the URL above the largest answer it gives"
            )

    def _check_limit(self, rows: list[JsonDataset]) -> None:
        if len(rows) > self.page:
            LOGGER.warning(
                "%s ignored limit=%d: took its %d rows", self.where, self.page, len(rows)
            )

    def _offset_works(self, offset: int) -> bool:
        """Whether the row before ``offset`` is still the last row seen."""
        return self.search(1, offset - 1)[0] == [self.last]

    def _rest(self, offset: int) -> list[JsonDataset]:
        """The rows after ``offset`` from one unpaged request, if it agrees with the pages."""
        rows = self.search(None, 0)[0]
        if len(rows) <= offset:
            return []
        if rows[0] != self.first or rows[offset - 1] != self.last:
            raise ProtocolError(
                f"{self.where} pages inconsistently (offset {offset} is empty, yet there are"
                f" {len(rows)} rows in other order). Set ?page= in the URL above the largest"
                " answer it gives"
            )
        LOGGER.warning(
            "%s answered offset=%d with nothing although %d rows match; took them in one"
            " request (the server pages wrongly with these matching keys)",
            self.where,
            offset,
            len(rows),
        )
        return rows[offset:]


# -- the endpoint -------------------------------------------------------------


class DicomwebEndpoint:
    """A DICOMweb service used as a source for inventory: QIDO-RS only."""

    capabilities = Capabilities(
        can_query=True, can_retrieve=False, can_store=False, can_delete=False
    )

    def __init__(
        self,
        address: DicomwebAddress,
        timeout: float = 30.0,
        *,
        session_factory: Callable[[], requests.Session] = requests.Session,
    ) -> None:
        self.address = address
        self.timeout = timeout
        self.session_factory = session_factory

    @property
    def label(self) -> str:
        return self.address.label

    @contextmanager
    def _client(self) -> Iterator[_Client]:
        """A client on a new keep-alive session, closed on exit."""
        session = self.session_factory()
        warnings: list[str] = []
        _prepare(session, warnings)
        try:
            client = DICOMwebClient(
                url=self.address.base_url, session=session, timeout=self.timeout
            )
            # One attempt per request: the caller retries on TransientError (bounded).
            client.set_http_retry_params(retry=False)
            # The client sends "Host: host" without the port; send what the URL says.
            client.host = self.address.netloc
            yield _Client(client, warnings)
        finally:
            session.close()

    def echo(self) -> None:
        """QIDO-RS ``studies?limit=1``: the service answers DICOM JSON."""
        where = f"QIDO-RS {self.label}/studies?limit=1"
        with self._client() as connection:
            try:
                connection.client.search_for_studies(limit=1)
            except requests.RequestException as exc:
                raise _request_error(exc, where, echo=True) from exc
        LOGGER.debug("%s answered", where)

    def find(self, identifier: Dataset) -> Iterator[Dataset]:
        """Yield each QIDO-RS match, paged, on a new session."""
        with self.query_session() as find:
            yield from find(identifier)

    @contextmanager
    def query_session(self) -> Iterator[Find]:
        """A ``find`` function whose requests reuse one HTTP keep-alive session."""
        with self._client() as connection:
            yield functools.partial(self._find, connection)

    def _find(self, connection: _Client, identifier: Dataset) -> Iterator[Dataset]:
        query = qido_query(identifier)
        where = f"QIDO-RS {self.label}/{query.resource}"
        search = functools.partial(_search_checked, connection, query, where)
        count = 0
        for row in _Pages(search, self.address.page, where):
            count += 1
            yield _dataset(row, query.level, where)
        LOGGER.debug("%s: %d matches", where, count)

    def retrieve(
        self, identifier: Dataset, sink: InstanceSink, sop_classes: Sequence[str]
    ) -> RetrieveResult:
        raise ConfigError(f"cannot retrieve from {self.label}: {_NOT_MIGRATING}")

    def store_session(self, contexts: list[tuple[str, str]]) -> NoReturn:
        raise ConfigError(f"cannot store to {self.label}: {_NOT_MIGRATING}")


def _dataset(row: JsonDataset, level: str, where: str) -> Dataset:
    """A DICOM JSON match as a C-FIND-like match dataset."""
    try:
        match = Dataset.from_json(row)
    except (TypeError, ValueError, KeyError) as exc:
        raise ProtocolError(f"{where} answered a match that is not DICOM JSON") from exc
    match.QueryRetrieveLevel = level
    return match
