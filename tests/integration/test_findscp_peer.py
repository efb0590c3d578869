"""The fake legacy PACS (pacsmigrate.testing.findscp) queried with plain pynetdicom."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
)

from pacsmigrate.testing.findscp import FindScp, running_find_scp

ROOT = "1.2.826.0.1.3680043.8.498.77"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
SUCCESS = 0x0000
PENDING = 0xFF00
UNABLE_TO_PROCESS = 0xC000
NON_ASCII_NAME = "Müller^Jürgen"


@dataclass(frozen=True)
class StudySpec:
    number: int
    patient_id: str
    name: str
    date: str | None  # None: no StudyDate attribute at all
    series: tuple[tuple[str, int], ...]  # (Modality, instances)
    charset: str | None = None


STUDIES = (
    StudySpec(1, "P001", "Adams^Anna", "20200105", (("CT", 3),)),
    StudySpec(2, "P002", "Baker^Bob", "20200115", (("MR", 2), ("MR", 1))),
    StudySpec(3, "P003", "Brown^Beth", "20200201", (("CT", 1), ("PT", 2))),
    StudySpec(4, "P004", "Clark^Carl", "20200214", (("CR", 2),)),
    StudySpec(5, "P005", NON_ASCII_NAME, "20200301", (("MR", 3),), "ISO_IR 192"),
    StudySpec(6, "P006", "Davis^Dan", "", (("US", 2),)),
    StudySpec(7, "P007", "Evans^Eve", None, (("CT", 2),)),
    StudySpec(8, "P001", "Adams^Anna", "20200315", (("DX", 1), ("CR", 1))),
    StudySpec(9, "P008", "Baxter^Ben", "20191231", (("CT", 2),)),
    StudySpec(10, "P009", "Garcia^Gil", "20200401", (("MG", 4),)),
    StudySpec(11, "P010", "Hill^Hana", "20200401", (("OT", 1), ("SR", 1))),
    StudySpec(12, "P011", "Bell^Ada", "20200131", (("CT", 1), ("MR", 1))),
)
DATED = [s.number for s in STUDIES if s.date]
ALL = [s.number for s in STUDIES]


def study_uid(number: int) -> str:
    return f"{ROOT}.{number}"


def series_uid(number: int, series: int) -> str:
    return f"{ROOT}.{number}.{series}"


def study_instances(spec: StudySpec) -> list[Dataset]:
    instances = []
    for series_number, (modality, count) in enumerate(spec.series, start=1):
        for instance_number in range(1, count + 1):
            ds = Dataset()
            if spec.charset:
                ds.SpecificCharacterSet = spec.charset
            ds.PatientID = spec.patient_id
            ds.PatientName = spec.name
            ds.PatientBirthDate = "19700101"
            ds.StudyInstanceUID = study_uid(spec.number)
            if spec.date is not None:
                ds.StudyDate = spec.date
            ds.StudyTime = "101500"
            ds.AccessionNumber = f"A{spec.number:03d}"
            ds.StudyDescription = f"Study {spec.number}"
            ds.SeriesInstanceUID = series_uid(spec.number, series_number)
            ds.Modality = modality
            ds.SeriesNumber = series_number
            ds.SOPInstanceUID = f"{ds.SeriesInstanceUID}.{instance_number}"
            ds.SOPClassUID = CT_IMAGE
            ds.InstanceNumber = instance_number
            instances.append(ds)
    return instances


INSTANCES = [ds for spec in STUDIES for ds in study_instances(spec)]
TRUE_COUNTS = {study_uid(s.number): sum(n for _, n in s.series) for s in STUDIES}


def find(
    scp: FindScp,
    query: Dataset,
    model: str = StudyRootQueryRetrieveInformationModelFind,
) -> tuple[list[Dataset], int]:
    """All matches of one C-FIND and the final status."""
    ae = AE("TESTSCU")
    ae.add_requested_context(model)
    assoc = ae.associate("127.0.0.1", scp.port, ae_title=scp.ae_title)
    assert assoc.is_established
    matches: list[Dataset] = []
    final = -1
    try:
        for status, match in assoc.send_c_find(query, model):
            code = int(status.Status)
            if code == PENDING:
                assert match is not None
                matches.append(match)
            else:
                final = code
    finally:
        assoc.release()
    return matches, final


def study_query(**keys: object) -> Dataset:
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = ""
    for keyword, value in keys.items():
        setattr(query, keyword, value)
    return query


def modalities(match: Dataset) -> list[str]:
    value = match.get("ModalitiesInStudy")
    if not value:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


def numbers(matches: Sequence[Dataset]) -> list[int]:
    return [int(str(m.StudyInstanceUID).rsplit(".", 1)[1]) for m in matches]


@pytest.fixture(scope="module")
def pacs() -> Iterator[FindScp]:
    with running_find_scp(INSTANCES) as scp:
        yield scp


@pytest.mark.parametrize(
    ("date", "expected"),
    [
        ("20200401", [10, 11]),
        ("20200101-20200131", [1, 2, 12]),
        ("-20200131", [1, 2, 9, 12]),
        ("20200315-", [8, 10, 11]),
        ("20200201-20200214", [3, 4]),
        ("20210101-20211231", []),
    ],
    ids=["single-day", "closed-range", "open-start", "open-end", "february", "no-match"],
)
def test_date_matching(pacs: FindScp, date: str, expected: list[int]) -> None:
    matches, status = find(pacs, study_query(StudyDate=date))
    assert status == SUCCESS
    assert numbers(matches) == expected
    assert {str(m.StudyDate) for m in matches} <= {s.date for s in STUDIES if s.date}


def test_universal_date_includes_undated_studies(pacs: FindScp) -> None:
    matches, status = find(pacs, study_query(StudyDate="", PatientName=""))
    assert status == SUCCESS
    assert numbers(matches) == ALL  # in the order the instances were given, each once
    dates = {n: m.get("StudyDate") for n, m in zip(numbers(matches), matches, strict=True)}
    assert dates[6] in ("", None) and dates[7] in ("", None)
    assert dates[1] == "20200105"
    assert all(m.RetrieveAETitle == "LEGACYPACS" for m in matches)


def test_undated_studies_never_match_a_date_range(pacs: FindScp) -> None:
    matches, _ = find(pacs, study_query(StudyDate="19000101-29991231"))
    assert numbers(matches) == DATED


@pytest.mark.filterwarnings("ignore:Invalid value for VR CS")  # wildcards are valid in queries
@pytest.mark.parametrize(
    ("modalities", "expected"),
    [
        ("MR", [2, 5, 12]),
        (["CT", "PT"], [1, 3, 7, 9, 12]),
        ("C?", [1, 3, 4, 7, 8, 9, 12]),
        ("S*", [11]),
        ("XA", []),
    ],
    ids=["single", "list", "wildcard-?", "wildcard-*", "absent"],
)
def test_modalities_in_study(
    pacs: FindScp, modalities: str | list[str], expected: list[int]
) -> None:
    matches, status = find(pacs, study_query(ModalitiesInStudy=modalities))
    assert status == SUCCESS
    assert numbers(matches) == expected


def test_modalities_in_study_returned_sorted_and_distinct(pacs: FindScp) -> None:
    matches, _ = find(pacs, study_query(ModalitiesInStudy=""))
    by_study = dict(zip(numbers(matches), map(modalities, matches), strict=True))
    assert by_study[2] == ["MR"]
    assert by_study[3] == ["CT", "PT"]
    assert by_study[8] == ["CR", "DX"]
    assert by_study[11] == ["OT", "SR"]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("B*", [2, 3, 9, 12]),
        ("b*", []),
        ("Ba?er^*", [2]),
        ("Adams^Anna", [1, 8]),
        ("*", ALL),
    ],
    ids=["prefix", "case-sensitive", "single-char", "exact", "star-is-universal"],
)
def test_patient_name_matching(pacs: FindScp, name: str, expected: list[int]) -> None:
    matches, status = find(pacs, study_query(PatientName=name))
    assert status == SUCCESS
    assert numbers(matches) == expected


def test_non_ascii_name_and_charset_survive(pacs: FindScp) -> None:
    query = study_query(PatientName="Mü*")
    query.SpecificCharacterSet = "ISO_IR 192"
    matches, _ = find(pacs, query)
    assert numbers(matches) == [5]
    (match,) = matches
    assert match.SpecificCharacterSet == "ISO_IR 192"
    raw = match.get_item("PatientName").value  # bytes as sent, padded to even length
    assert raw.rstrip(b" ") == NON_ASCII_NAME.encode("utf-8")
    assert str(match.PatientName) == NON_ASCII_NAME


@pytest.mark.parametrize(
    ("keyword", "value", "expected"),
    [
        ("PatientID", "P001", [1, 8]),
        ("AccessionNumber", "A01?", [10, 11, 12]),
        ("StudyInstanceUID", [study_uid(4), study_uid(9), f"{ROOT}.999"], [4, 9]),
        ("PatientBirthDate", "19700101", ALL),
        ("StudyDescription", "Study 1*", [1, 10, 11, 12]),
    ],
    ids=["patient-id", "accession-wildcard", "uid-list", "birth-date", "description"],
)
def test_other_study_keys(pacs: FindScp, keyword: str, value: object, expected: list[int]) -> None:
    matches, _ = find(pacs, study_query(**{keyword: value}))
    assert numbers(matches) == expected


def test_series_level_within_a_study(pacs: FindScp) -> None:
    query = Dataset()
    query.QueryRetrieveLevel = "SERIES"
    query.StudyInstanceUID = study_uid(3)
    query.SeriesInstanceUID = ""
    query.Modality = ""
    query.NumberOfSeriesRelatedInstances = ""
    matches, status = find(pacs, query)
    assert status == SUCCESS
    assert [str(m.SeriesInstanceUID) for m in matches] == [series_uid(3, 1), series_uid(3, 2)]
    assert [m.Modality for m in matches] == ["CT", "PT"]
    assert [int(m.NumberOfSeriesRelatedInstances) for m in matches] == [1, 2]
    assert all(m.StudyInstanceUID == study_uid(3) for m in matches)
    assert all(m.QueryRetrieveLevel == "SERIES" for m in matches)


def test_series_level_modality_filter(pacs: FindScp) -> None:
    query = Dataset()
    query.QueryRetrieveLevel = "SERIES"
    query.StudyInstanceUID = ""
    query.SeriesInstanceUID = ""
    query.Modality = "MR"
    matches, _ = find(pacs, query)
    expected = [series_uid(2, 1), series_uid(2, 2), series_uid(5, 1), series_uid(12, 2)]
    assert [str(m.SeriesInstanceUID) for m in matches] == expected


@pytest.mark.parametrize(
    ("series", "expected"),
    [
        (series_uid(3, 2), [f"{series_uid(3, 2)}.1", f"{series_uid(3, 2)}.2"]),
        ("", [f"{series_uid(3, 1)}.1", f"{series_uid(3, 2)}.1", f"{series_uid(3, 2)}.2"]),
    ],
    ids=["one-series", "whole-study"],
)
def test_image_level(pacs: FindScp, series: str, expected: list[str]) -> None:
    query = Dataset()
    query.QueryRetrieveLevel = "IMAGE"
    query.StudyInstanceUID = study_uid(3)
    query.SeriesInstanceUID = series
    query.SOPInstanceUID = ""
    query.SOPClassUID = ""
    query.InstanceNumber = ""
    matches, status = find(pacs, query)
    assert status == SUCCESS
    assert [str(m.SOPInstanceUID) for m in matches] == expected
    assert all(m.StudyInstanceUID == study_uid(3) for m in matches)
    assert all(str(m.SeriesInstanceUID).startswith(study_uid(3) + ".") for m in matches)
    assert all(m.SOPClassUID == CT_IMAGE for m in matches)
    assert all(m.QueryRetrieveLevel == "IMAGE" for m in matches)


def test_patient_root_model_is_accepted(pacs: FindScp) -> None:
    query = study_query(PatientID="P001")
    matches, status = find(pacs, query, PatientRootQueryRetrieveInformationModelFind)
    assert status == SUCCESS
    assert numbers(matches) == [1, 8]


def test_number_of_study_related_instances_is_true_count(pacs: FindScp) -> None:
    matches, _ = find(pacs, study_query(NumberOfStudyRelatedInstances=""))
    counts = {str(m.StudyInstanceUID): int(m.NumberOfStudyRelatedInstances) for m in matches}
    assert counts == TRUE_COUNTS
    assert sum(counts.values()) == len(INSTANCES) == 30


def test_reported_instances_override() -> None:
    wrong = {study_uid(10): 99, study_uid(2): 1}
    with running_find_scp(INSTANCES, reported_instances=wrong) as scp:
        matches, _ = find(
            scp, study_query(NumberOfStudyRelatedInstances="", NumberOfStudyRelatedSeries="")
        )
    counts = {str(m.StudyInstanceUID): int(m.NumberOfStudyRelatedInstances) for m in matches}
    assert counts == {**TRUE_COUNTS, **wrong}
    series = {
        n: int(m.NumberOfStudyRelatedSeries) for n, m in zip(numbers(matches), matches, strict=True)
    }
    assert series[2] == 2 and series[10] == 1  # only the instance count lies


@pytest.mark.parametrize("cap", [0, 1, 5, 11])
def test_cap_truncates_silently(cap: int) -> None:
    with running_find_scp(INSTANCES, cap=cap) as scp:
        matches, status = find(scp, study_query())
    assert status == SUCCESS
    assert numbers(matches) == ALL[:cap]


def test_cap_above_the_match_count_returns_everything() -> None:
    with running_find_scp(INSTANCES, cap=5) as scp:
        matches, status = find(scp, study_query(StudyDate="20200401"))
    assert status == SUCCESS
    assert numbers(matches) == [10, 11]


@pytest.mark.parametrize(
    ("cap", "expected"),
    [(None, [1, 1, 2, 2, 12, 12]), (5, [1, 1, 2, 2, 12])],
    ids=["uncapped", "cap-counts-duplicates"],
)
def test_duplicate_rows(cap: int | None, expected: list[int]) -> None:
    with running_find_scp(INSTANCES, duplicate_rows=True, cap=cap) as scp:
        matches, status = find(scp, study_query(StudyDate="20200101-20200131"))
    assert status == SUCCESS
    assert numbers(matches) == expected


def test_empty_studies_appear_at_study_level_only() -> None:
    empty = Dataset()
    empty.PatientID = "P099"
    empty.PatientName = "Zero^Zoe"
    empty.StudyInstanceUID = study_uid(13)
    empty.StudyDate = "20200410"
    empty.AccessionNumber = "A013"
    with running_find_scp(INSTANCES, empty_studies=[empty]) as scp:
        studies, _ = find(
            scp,
            study_query(
                StudyDate="20200401-",
                PatientName="",
                NumberOfStudyRelatedInstances="",
                ModalitiesInStudy="",
            ),
        )
        series_query = Dataset()
        series_query.QueryRetrieveLevel = "SERIES"
        series_query.StudyInstanceUID = study_uid(13)
        series_query.SeriesInstanceUID = ""
        series, status = find(scp, series_query)
        by_modality, _ = find(scp, study_query(ModalitiesInStudy="CT"))
    assert numbers(studies) == [10, 11, 13]
    assert int(studies[-1].NumberOfStudyRelatedInstances) == 0
    assert modalities(studies[-1]) == []
    assert studies[-1].PatientName == "Zero^Zoe"
    assert status == SUCCESS and series == []
    assert 13 not in numbers(by_modality)


def test_requests_are_recorded_as_copies() -> None:
    with running_find_scp(INSTANCES, ae_title="OLDPACS") as scp:
        find(scp, study_query(StudyDate="20200401"))
        series_query = Dataset()
        series_query.QueryRetrieveLevel = "SERIES"
        series_query.StudyInstanceUID = study_uid(1)
        series_query.SeriesInstanceUID = ""
        find(scp, series_query)
        find(scp, study_query(PatientName="B*"))
    assert scp.dimse_url("PACSMIGRATE") == (
        f"dimse://OLDPACS@127.0.0.1:{scp.port}?calling=PACSMIGRATE"
    )
    assert [str(r.QueryRetrieveLevel) for r in scp.requests] == ["STUDY", "SERIES", "STUDY"]
    assert scp.requests[0].StudyDate == "20200401"
    assert [r.get("PatientName") for r in scp.requests_at("STUDY")] == [None, "B*"]
    (series,) = scp.requests_at("SERIES")
    assert series.StudyInstanceUID == study_uid(1)
    assert scp.requests_at("IMAGE") == []


def test_unknown_level_fails(pacs: FindScp) -> None:
    query = study_query()
    query.QueryRetrieveLevel = "PATIENT"
    matches, status = find(pacs, query)
    assert matches == []
    assert status == UNABLE_TO_PROCESS


def test_unknown_keys_are_ignored_and_returned_empty(pacs: FindScp) -> None:
    # InstitutionName is not stored; Modality is not a study-level key.
    matches, _ = find(pacs, study_query(InstitutionName="Nowhere", Modality="ZZ", PatientID=""))
    assert numbers(matches) == ALL
    assert all(m.InstitutionName in ("", None) for m in matches)
    assert all(m.Modality in ("", None) for m in matches)
    assert "PatientID" in matches[0] and "SOPInstanceUID" not in matches[0]


def test_wrong_called_ae_is_rejected(pacs: FindScp) -> None:
    ae = AE("TESTSCU")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = ae.associate("127.0.0.1", pacs.port, ae_title="SOMEONEELSE")
    assert not assoc.is_established
    assert assoc.is_rejected
