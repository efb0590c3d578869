"""An in-memory Query/Retrieve C-FIND SCP that behaves like a difficult legacy PACS.

It serves instance-level DICOM headers given in code, for integration tests of the
inventory crawler, and misbehaves on purpose the way real legacy PACS do:

- ``cap``: at most ``cap`` matches per C-FIND, then plain Success (silent truncation);
- ``duplicate_rows``: every match is sent twice;
- ``reported_instances``: a wrong NumberOfStudyRelatedInstances for some studies;
- ``empty_studies``: studies that exist at STUDY level but hold no series or instance.

Matching follows DICOM PS3.4 C.2.2.2 (universal, single value, UID list, wildcard and
date/time range matching) at the STUDY, SERIES and IMAGE levels of the Study Root
model; the Patient Root model is accepted with the same levels. Keys the SCP does not
know are ignored for matching and returned empty. Every request identifier is kept
(as a copy) in :attr:`FindScp.requests`. Nothing is logged, so no patient data either.
"""

from __future__ import annotations

import copy
import itertools
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag
from pynetdicom import AE, _config, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
    Verification,
)

from pacsmigrate.testing.orthanc import free_port

__all__ = ["FindScp", "running_find_scp"]

# Keep identifiers (patient data) out of pynetdicom's logs, on both sides.
_config.LOG_REQUEST_IDENTIFIERS = False
_config.LOG_RESPONSE_IDENTIFIERS = False

_PENDING = 0xFF00
_CANCELLED = 0xFE00
_UNABLE_TO_PROCESS = 0xC000

LEVELS = ("STUDY", "SERIES", "IMAGE")
_UNIQUE_KEY = {
    "STUDY": "StudyInstanceUID",
    "SERIES": "SeriesInstanceUID",
    "IMAGE": "SOPInstanceUID",
}
_NOT_KEYS = frozenset({"QueryRetrieveLevel", "SpecificCharacterSet"})

# Attributes the SCP knows (stored), by the level that owns them.
_STORED: dict[str, frozenset[str]] = {
    "STUDY": frozenset(
        {
            "PatientID",
            "PatientName",
            "PatientBirthDate",
            "PatientSex",
            "IssuerOfPatientID",
            "StudyInstanceUID",
            "StudyDate",
            "StudyTime",
            "AccessionNumber",
            "StudyDescription",
            "StudyID",
            "ReferringPhysicianName",
        }
    ),
    "SERIES": frozenset(
        {
            "SeriesInstanceUID",
            "Modality",
            "SeriesNumber",
            "SeriesDescription",
            "SeriesDate",
            "SeriesTime",
            "BodyPartExamined",
        }
    ),
    "IMAGE": frozenset({"SOPInstanceUID", "SOPClassUID", "InstanceNumber"}),
}
# Attributes computed from the indexes, by the level that owns them.
_COMPUTED: dict[str, frozenset[str]] = {
    "STUDY": frozenset(
        {"NumberOfStudyRelatedInstances", "NumberOfStudyRelatedSeries", "ModalitiesInStudy"}
    ),
    "SERIES": frozenset({"NumberOfSeriesRelatedInstances"}),
    "IMAGE": frozenset(),
}
# Computed attributes that are return keys only (never matched).
_RETURN_ONLY = frozenset(
    {
        "NumberOfStudyRelatedInstances",
        "NumberOfStudyRelatedSeries",
        "NumberOfSeriesRelatedInstances",
    }
)


def _levels_down_to(level: str) -> tuple[str, ...]:
    return LEVELS[: LEVELS.index(level) + 1]


# Keys known at a query level: those of that level and of the levels above it.
_KNOWN: dict[str, frozenset[str]] = {
    level: frozenset().union(
        *(_STORED[upper] | _COMPUTED[upper] for upper in _levels_down_to(level))
    )
    for level in LEVELS
}
_MATCHABLE: dict[str, frozenset[str]] = {
    level: known - _RETURN_ONLY for level, known in _KNOWN.items()
}


@dataclass
class FindScp:
    """A running fake PACS: where to reach it and what it was asked."""

    ae_title: str
    port: int
    requests: list[Dataset] = field(default_factory=list)

    def dimse_url(self, calling_ae: str) -> str:
        """Source URL for pacsmigrate, calling this SCP as ``calling_ae``."""
        return f"dimse://{self.ae_title}@127.0.0.1:{self.port}?calling={calling_ae}"

    def requests_at(self, level: str) -> list[Dataset]:
        """The recorded request identifiers whose QueryRetrieveLevel is ``level``."""
        return [ds for ds in self.requests if _level_of(ds) == level]


# --------------------------------------------------------------------------- values


def _element_values(elem: DataElement | None) -> tuple[str, ...]:
    """The values of an element as stripped strings; () when missing or empty."""
    if elem is None or elem.VR == "SQ":
        return ()
    value = elem.value
    if value is None:
        return ()
    items = list(value) if isinstance(value, MultiValue | list | tuple) else [value]
    texts = tuple(str(item).strip() for item in items)
    return () if all(not text for text in texts) else texts


def _element(ds: Dataset, keyword: str) -> DataElement | None:
    return ds.data_element(keyword) if keyword in ds else None


def _level_of(identifier: Dataset) -> str:
    return _text(identifier, "QueryRetrieveLevel")


def _text(ds: Dataset, keyword: str) -> str:
    return "\\".join(_element_values(_element(ds, keyword)))


@dataclass(eq=False)
class _Record:
    """A study, series or image as the SCP stores it."""

    level: str
    uid: str
    ordinal: int
    source: Dataset  # the instance header the stored attributes come from
    parent: _Record | None = None
    children: list[_Record] = field(default_factory=list)
    computed: dict[str, tuple[str, ...]] = field(default_factory=dict)
    _cache: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def computed_value(self, keyword: str) -> tuple[str, ...] | None:
        record: _Record | None = self
        while record is not None:
            if keyword in record.computed:
                return record.computed[keyword]
            record = record.parent
        return None

    def values(self, keyword: str) -> tuple[str, ...]:
        """Values of a known attribute, for matching."""
        computed = self.computed_value(keyword)
        if computed is not None:
            return computed
        cached = self._cache.get(keyword)
        if cached is None:
            cached = _element_values(_element(self.source, keyword))
            self._cache[keyword] = cached
        return cached


# ------------------------------------------------------------------------- matching

_Test = Callable[[tuple[str, ...]], bool]
_Bound = tuple[str | None, str | None]


def _wildcard_test(wanted: tuple[str, ...]) -> _Test:
    """Single value (case-sensitive) or ``*``/``?`` wildcard matching, any of ``wanted``."""
    patterns = [
        re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in w))
        for w in wanted
    ]

    def test(values: tuple[str, ...]) -> bool:
        return any(p.fullmatch(v) for p in patterns for v in values)

    return test


def _uid_list_test(wanted: tuple[str, ...]) -> _Test:
    accepted = frozenset(wanted)

    def test(values: tuple[str, ...]) -> bool:
        return any(v in accepted for v in values)

    return test


def _date_key(text: str) -> str:
    return text.replace(".", "")  # tolerate old ACR-NEMA style YYYY.MM.DD


def _time_key(text: str, pad: str) -> str:
    """Comparable TM: HHMMSS.FFFFFF, missing digits filled with ``pad``."""
    whole, _, fraction = text.replace(":", "").partition(".")
    return f"{whole.ljust(6, pad)}.{fraction.ljust(6, pad)}"


def _bounds(text: str) -> _Bound:
    """``A`` -> (A, A); ``A-B`` -> (A, B); ``-B`` -> (None, B); ``A-`` -> (A, None)."""
    if "-" not in text:
        return text, text
    low, _, high = text.partition("-")
    return low or None, high or None


def _range_test(
    wanted: tuple[str, ...], low_key: Callable[[str], str], high_key: Callable[[str], str]
) -> _Test:
    """Single value or range matching (inclusive) for DA and TM keys."""
    ranges = [
        (None if low is None else low_key(low), None if high is None else high_key(high))
        for low, high in map(_bounds, wanted)
    ]

    def inside(value: str) -> bool:
        low_value, high_value = low_key(value), high_key(value)
        return any(
            (low is None or high_value >= low) and (high is None or low_value <= high)
            for low, high in ranges
        )

    def test(values: tuple[str, ...]) -> bool:
        return any(inside(v) for v in values if v)

    return test


def _make_test(keyword: str, wanted: tuple[str, ...]) -> _Test:
    vr = dictionary_VR(keyword)
    if vr == "UI":
        return _uid_list_test(tuple(part for w in wanted for part in w.split("\\")))
    if vr == "DA":
        return _range_test(wanted, _date_key, _date_key)
    if vr == "TM":
        return _range_test(wanted, lambda t: _time_key(t, "0"), lambda t: _time_key(t, "9"))
    return _wildcard_test(wanted)


def _is_universal(keyword: str, wanted: tuple[str, ...]) -> bool:
    if not wanted:
        return True
    return dictionary_VR(keyword) not in ("UI", "DA", "TM") and all(w == "*" for w in wanted)


def _build_tests(identifier: Dataset, level: str) -> list[tuple[str, _Test]]:
    """One test per non-universal key the SCP can match at ``level``."""
    tests: list[tuple[str, _Test]] = []
    for elem in identifier:
        keyword = elem.keyword
        if keyword not in _MATCHABLE[level]:
            continue
        wanted = _element_values(elem)
        if not _is_universal(keyword, wanted):
            tests.append((keyword, _make_test(keyword, wanted)))
    return tests


def _wanted_uids(identifier: Dataset, keyword: str) -> frozenset[str]:
    values = _element_values(_element(identifier, keyword))
    return frozenset(part for value in values for part in value.split("\\") if part)


# ------------------------------------------------------------------------- response


def _empty_element(tag: BaseTag, vr: str) -> DataElement:
    return DataElement(tag, vr, [] if vr == "SQ" else None)


def _computed_element(keyword: str, values: tuple[str, ...]) -> DataElement:
    tag = tag_for_keyword(keyword)
    assert tag is not None
    value: str | list[str] | None = (
        None if not values else values[0] if len(values) == 1 else list(values)
    )
    return DataElement(tag, dictionary_VR(tag), value)


def _response_element(record: _Record, tag: BaseTag, keyword: str, vr: str) -> DataElement:
    """The record's value for a requested key, or an empty element."""
    if keyword in _KNOWN[record.level]:
        computed = record.computed_value(keyword)
        if computed is not None:
            return _computed_element(keyword, computed)
        if keyword in record.source:
            return copy.deepcopy(record.source[keyword])
    return _empty_element(tag, vr)


def _unique_keys(record: _Record) -> Iterator[tuple[str, str]]:
    current: _Record | None = record
    while current is not None:
        yield _UNIQUE_KEY[current.level], current.uid
        current = current.parent


def _response(record: _Record, identifier: Dataset, ae_title: str) -> Dataset:
    response = Dataset()
    for elem in identifier:
        if elem.keyword not in _NOT_KEYS:
            response[elem.tag] = _response_element(record, elem.tag, elem.keyword, elem.VR)
    response.QueryRetrieveLevel = record.level
    for keyword, uid in _unique_keys(record):
        if keyword in record.source:
            response[keyword] = copy.deepcopy(record.source[keyword])
        else:
            setattr(response, keyword, uid)
    if "SpecificCharacterSet" in record.source:
        response["SpecificCharacterSet"] = copy.deepcopy(record.source["SpecificCharacterSet"])
    response.RetrieveAETitle = ae_title
    return response


# -------------------------------------------------------------------------- indexes


class _Index:
    """Studies, series and images grouped once, in the order they were given."""

    def __init__(
        self,
        instances: Sequence[Dataset],
        empty_studies: Sequence[Dataset],
        reported_instances: Mapping[str, int],
    ) -> None:
        self.studies: list[_Record] = []
        self.series: list[_Record] = []
        self.images: list[_Record] = []
        self.study_by_uid: dict[str, _Record] = {}
        self.series_by_uid: dict[str, list[_Record]] = {}
        series_by_key: dict[tuple[str, str], _Record] = {}
        for ds in instances:
            study = self._study(ds)
            series_uid = _text(ds, "SeriesInstanceUID")
            series = series_by_key.get((study.uid, series_uid))
            if series is None:
                series = _Record("SERIES", series_uid, len(self.series), ds, parent=study)
                series_by_key[(study.uid, series_uid)] = series
                study.children.append(series)
                self.series.append(series)
                self.series_by_uid.setdefault(series_uid, []).append(series)
            image = _Record("IMAGE", _text(ds, "SOPInstanceUID"), len(self.images), ds, series)
            series.children.append(image)
            self.images.append(image)
        for ds in empty_studies:
            if _text(ds, "StudyInstanceUID") in self.study_by_uid:
                raise ValueError("an empty study has the UID of a study with instances")
            self._study(ds)
        for study in self.studies:
            self._compute(study, reported_instances)

    def _study(self, ds: Dataset) -> _Record:
        uid = _text(ds, "StudyInstanceUID")
        study = self.study_by_uid.get(uid)
        if study is None:
            study = _Record("STUDY", uid, len(self.studies), ds)
            self.study_by_uid[uid] = study
            self.studies.append(study)
        return study

    @staticmethod
    def _compute(study: _Record, reported_instances: Mapping[str, int]) -> None:
        total = 0
        modalities: set[str] = set()
        for series in study.children:
            count = len(series.children)
            total += count
            series.computed["NumberOfSeriesRelatedInstances"] = (str(count),)
            modalities.update(series.values("Modality"))
        study.computed["NumberOfStudyRelatedInstances"] = (
            str(reported_instances.get(study.uid, total)),
        )
        study.computed["NumberOfStudyRelatedSeries"] = (str(len(study.children)),)
        study.computed["ModalitiesInStudy"] = tuple(sorted(modalities))

    def candidates(self, level: str, identifier: Dataset) -> list[_Record]:
        """Records that may match: narrowed by the unique keys given, in order."""
        studies = _wanted_uids(identifier, "StudyInstanceUID")
        series_uids = _wanted_uids(identifier, "SeriesInstanceUID") if level != "STUDY" else None
        if level == "STUDY":
            if not studies:
                return self.studies
            return _ordered(self.study_by_uid[u] for u in studies if u in self.study_by_uid)
        if series_uids:
            chosen = [s for u in series_uids for s in self.series_by_uid.get(u, [])]
        elif studies:
            found = (self.study_by_uid[u] for u in studies if u in self.study_by_uid)
            chosen = [series for study in found for series in study.children]
        else:
            return self.series if level == "SERIES" else self.images
        if level == "SERIES":
            return _ordered(chosen)
        return _ordered(image for series in chosen for image in series.children)

    def matches(self, level: str, identifier: Dataset) -> Iterator[_Record]:
        tests = _build_tests(identifier, level)
        for record in self.candidates(level, identifier):
            if all(test(record.values(keyword)) for keyword, test in tests):
                yield record


def _ordered(records: Iterable[_Record]) -> list[_Record]:
    return sorted(records, key=lambda record: record.ordinal)


# ------------------------------------------------------------------------------ SCP


def _rows(
    records: Iterator[_Record], identifier: Dataset, ae_title: str, repeat: int
) -> Iterator[Dataset]:
    for record in records:
        response = _response(record, identifier, ae_title)
        for _ in range(repeat):
            yield response


def _handler(
    scp: FindScp, index: _Index, cap: int | None, duplicate_rows: bool
) -> Callable[[evt.Event], Iterator[tuple[int, Dataset | None]]]:
    def on_find(event: evt.Event) -> Iterator[tuple[int, Dataset | None]]:
        identifier: Dataset = event.identifier
        scp.requests.append(copy.deepcopy(identifier))
        level = _level_of(identifier)
        if level not in LEVELS:
            yield _UNABLE_TO_PROCESS, None
            return
        rows = _rows(
            index.matches(level, identifier), identifier, scp.ae_title, 2 if duplicate_rows else 1
        )
        for row in itertools.islice(rows, cap):
            if event.is_cancelled:
                yield _CANCELLED, None
                return
            yield _PENDING, row

    return on_find


@contextmanager
def running_find_scp(
    instances: Sequence[Dataset],
    *,
    ae_title: str = "LEGACYPACS",
    cap: int | None = None,
    duplicate_rows: bool = False,
    reported_instances: Mapping[str, int] | None = None,
    empty_studies: Sequence[Dataset] = (),
) -> Iterator[FindScp]:
    """Serve ``instances`` (instance-level headers) over C-FIND on a free loopback port.

    ``cap``: at most that many rows per C-FIND (duplicates included), then Success.
    ``duplicate_rows``: each match is sent twice in a row.
    ``reported_instances``: study UID -> NumberOfStudyRelatedInstances to answer.
    ``empty_studies``: study-level data sets of studies without any instance.
    """
    if cap is not None and cap < 0:
        raise ValueError("cap must be >= 0")
    index = _Index(instances, empty_studies, reported_instances or {})
    scp = FindScp(ae_title=ae_title, port=free_port())
    ae = AE(ae_title)
    ae.require_called_aet = True
    for sop_class in (
        Verification,
        StudyRootQueryRetrieveInformationModelFind,
        PatientRootQueryRetrieveInformationModelFind,
    ):
        ae.add_supported_context(sop_class)
    server = ae.start_server(
        ("127.0.0.1", scp.port),
        block=False,
        evt_handlers=[(evt.EVT_C_FIND, _handler(scp, index, cap, duplicate_rows))],
    )
    assert server is not None  # block=False always returns the server
    try:
        yield scp
    finally:
        server.shutdown()
