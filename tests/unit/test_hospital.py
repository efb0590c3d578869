"""Tests for the seeded generated hospital (pacsmigrate.testing.hospital)."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_charset_files
from pydicom.dataset import Dataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID

from pacsmigrate.testing.hospital import (
    BASIC_TEXT_SR_STORAGE,
    ENCAPSULATED_PDF_STORAGE,
    PRIVATE_CREATOR,
    PRIVATE_GROUP,
    US_MULTIFRAME_IMAGE_STORAGE,
    GeneratedInstance,
    generate_hospital,
)
from pacsmigrate.testing.hospital import _uid as hospital_uid

EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
JPEG_LOSSLESS = "1.2.840.10008.1.2.4.70"
J2K_LOSSLESS = "1.2.840.10008.1.2.4.90"
RLE_LOSSLESS = "1.2.840.10008.1.2.5"

REQUIRED_KEYWORDS = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "SOPClassUID",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "StudyID",
    "Modality",
    "SeriesNumber",
    "InstanceNumber",
    "StudyDescription",
    "SeriesDescription",
    "ReferringPhysicianName",
    "Manufacturer",
)
UID_RE = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")


@pytest.fixture(scope="module")
def hospital(tmp_path_factory: pytest.TempPathFactory) -> list[GeneratedInstance]:
    return generate_hospital(tmp_path_factory.mktemp("hospital"), seed=0)


@pytest.fixture(scope="module")
def datasets(hospital: list[GeneratedInstance]) -> list[Dataset]:
    return [pydicom.dcmread(inst.path) for inst in hospital]


def _uids(instances: list[GeneratedInstance]) -> set[str]:
    return {uid for i in instances for uid in (i.study_uid, i.series_uid, i.sop_instance_uid)}


def _is_valid_uid(uid: str) -> bool:
    return 0 < len(uid) <= 64 and UID_RE.match(uid) is not None


def test_size_and_files_at_scale_1(hospital: list[GeneratedInstance]) -> None:
    assert 40 <= len(hospital) <= 70
    assert len({i.patient_id for i in hospital}) >= 6
    for inst in hospital:
        assert inst.path.is_file()
        assert inst.path.name == f"{inst.sop_instance_uid}.dcm"
    assert len({i.path for i in hospital}) == len(hospital)


def test_first_instance_is_known_ct_slice(
    hospital: list[GeneratedInstance], datasets: list[Dataset]
) -> None:
    first, ds = hospital[0], datasets[0]
    assert first.modality == "CT"
    assert first.sop_class_uid == "1.2.840.10008.5.1.4.1.1.2"
    assert int(ds.InstanceNumber) == 1
    assert int(ds.SeriesNumber) == 1


def test_same_seed_is_byte_identical(tmp_path: Path) -> None:
    a = generate_hospital(tmp_path / "a", seed=7)
    b = generate_hospital(tmp_path / "b", seed=7)
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.path.name == y.path.name
        assert (x.sop_instance_uid, x.series_uid, x.study_uid) == (
            y.sop_instance_uid,
            y.series_uid,
            y.study_uid,
        )
        assert (x.patient_id, x.transfer_syntax_uid, x.modality) == (
            y.patient_id,
            y.transfer_syntax_uid,
            y.modality,
        )
        assert x.path.read_bytes() == y.path.read_bytes()


def test_different_seed_gives_different_uids(
    tmp_path: Path, hospital: list[GeneratedInstance]
) -> None:
    other = generate_hospital(tmp_path, seed=1)
    assert len(other) == len(hospital)
    assert not (_uids(other) & _uids(hospital))
    assert {i.patient_id for i in other}.isdisjoint({i.patient_id for i in hospital})


def test_regenerating_into_same_dir_overwrites(tmp_path: Path) -> None:
    first = generate_hospital(tmp_path, seed=3)
    before = {i.path: i.path.read_bytes() for i in first}
    second = generate_hospital(tmp_path, seed=3)
    assert [i.path for i in second] == list(before)
    assert all(i.path.read_bytes() == before[i.path] for i in second)
    assert len(list(tmp_path.glob("*.dcm"))) == len(first)


def test_transfer_syntax_coverage(hospital: list[GeneratedInstance]) -> None:
    syntaxes = {i.transfer_syntax_uid for i in hospital}
    assert {EXPLICIT_LE, IMPLICIT_LE, JPEG_LOSSLESS, J2K_LOSSLESS, RLE_LOSSLESS} <= syntaxes


def test_modality_and_sop_class_coverage(hospital: list[GeneratedInstance]) -> None:
    modalities = {i.modality for i in hospital}
    assert {"CT", "MR", "US", "SR", "DOC"} <= modalities
    assert modalities & {"CR", "DX"}
    sop_classes = {i.sop_class_uid for i in hospital}
    assert {
        US_MULTIFRAME_IMAGE_STORAGE,
        BASIC_TEXT_SR_STORAGE,
        ENCAPSULATED_PDF_STORAGE,
    } <= sop_classes
    by_ts = {(i.modality, i.transfer_syntax_uid) for i in hospital}
    assert ("CT", EXPLICIT_LE) in by_ts
    assert ("MR", IMPLICIT_LE) in by_ts
    assert {("CR", JPEG_LOSSLESS), ("DX", JPEG_LOSSLESS)} & by_ts


def test_file_meta_matches_instances(
    hospital: list[GeneratedInstance], datasets: list[Dataset]
) -> None:
    for inst, ds in zip(hospital, datasets, strict=True):
        meta = ds.file_meta
        assert meta.TransferSyntaxUID == inst.transfer_syntax_uid
        assert meta.MediaStorageSOPClassUID == inst.sop_class_uid == ds.SOPClassUID
        assert meta.MediaStorageSOPInstanceUID == inst.sop_instance_uid
        assert ds.SOPInstanceUID == inst.sop_instance_uid
        assert ds.SeriesInstanceUID == inst.series_uid
        assert ds.StudyInstanceUID == inst.study_uid
        assert ds.PatientID == inst.patient_id
        assert ds.Modality == inst.modality
        assert meta.ImplementationClassUID == PYDICOM_IMPLEMENTATION_UID


def test_encoding_follows_transfer_syntax(
    hospital: list[GeneratedInstance], datasets: list[Dataset]
) -> None:
    for inst, ds in zip(hospital, datasets, strict=True):
        implicit, little = ds.original_encoding
        assert little is True
        assert implicit is (inst.transfer_syntax_uid == IMPLICIT_LE), inst.path.name


def test_all_uids_valid(hospital: list[GeneratedInstance], datasets: list[Dataset]) -> None:
    for inst, ds in zip(hospital, datasets, strict=True):
        for uid in (
            inst.study_uid,
            inst.series_uid,
            inst.sop_instance_uid,
            inst.sop_class_uid,
            inst.transfer_syntax_uid,
            ds.file_meta.ImplementationClassUID,
        ):
            assert _is_valid_uid(str(uid)), uid
    assert not _is_valid_uid("1.2.03")
    assert not _is_valid_uid("1." + "2" * 64)


def test_uid_hierarchy_consistent(hospital: list[GeneratedInstance]) -> None:
    sops = [i.sop_instance_uid for i in hospital]
    assert len(set(sops)) == len(sops)
    series_study: dict[str, str] = {}
    study_patient: dict[str, str] = {}
    for i in hospital:
        assert series_study.setdefault(i.series_uid, i.study_uid) == i.study_uid
        assert study_patient.setdefault(i.study_uid, i.patient_id) == i.patient_id
    assert not set(series_study) & set(study_patient)
    assert not set(sops) & (set(series_study) | set(study_patient))
    assert len(study_patient) >= len(set(study_patient.values()))


def test_required_attributes_present(datasets: list[Dataset]) -> None:
    for ds in datasets:
        for keyword in REQUIRED_KEYWORDS:
            assert keyword in ds, keyword
            assert str(ds[keyword].value) != "", keyword


def test_study_dates_spread_over_years(datasets: list[Dataset]) -> None:
    years = {int(ds.StudyDate[:4]) for ds in datasets}
    assert all(2015 <= year <= 2025 for year in years)
    assert len(years) >= 5
    for ds in datasets:
        assert re.fullmatch(r"\d{8}", ds.StudyDate)
        assert re.fullmatch(r"\d{6}", ds.StudyTime)


def test_character_sets(datasets: list[Dataset]) -> None:
    charsets = {str(ds.SpecificCharacterSet) for ds in datasets if "SpecificCharacterSet" in ds}
    assert len(charsets) >= 4
    assert "ISO_IR 192" in charsets
    assert any("ISO 2022" in cs for cs in charsets)


def _raw_patient_name(path: Path | str) -> tuple[str, bytes]:
    ds = pydicom.dcmread(path)
    raw = ds.get_item(0x00100010)
    assert raw is not None
    return str(ds.get("SpecificCharacterSet", "")), bytes(raw.value).rstrip(b" \x00")


def test_raw_patient_names_match_pydicom_charset_files(
    hospital: list[GeneratedInstance],
) -> None:
    reference: dict[str, bytes] = {}
    for name in ("chrGerm.dcm", "chrH31.dcm", "chrRuss.dcm", "chrGreek.dcm", "chrX1.dcm"):
        charset, raw = _raw_patient_name(get_charset_files(name)[0])
        reference[charset] = raw
    seen: set[str] = set()
    for inst in hospital:
        charset, raw = _raw_patient_name(inst.path)
        if charset in reference:
            assert raw == reference[charset], (charset, raw)
            seen.add(charset)
    assert seen == set(reference)


def test_names_decode_non_ascii(datasets: list[Dataset]) -> None:
    names = {str(ds.PatientName) for ds in datasets}
    assert any(not name.isascii() for name in names)
    assert "Äneas^Rüdiger" in names
    assert any("山田" in name for name in names)


def test_private_tags(hospital: list[GeneratedInstance], datasets: list[Dataset]) -> None:
    with_private = 0
    for inst, ds in zip(hospital, datasets, strict=True):
        try:
            block = ds.private_block(PRIVATE_GROUP, PRIVATE_CREATOR)
        except KeyError:
            continue
        with_private += 1
        assert inst.transfer_syntax_uid != IMPLICIT_LE
        vrs = {block[offset].VR for offset in (0x01, 0x02, 0x03, 0x04)}
        assert vrs == {"LO", "US", "OB", "SQ"}
        assert len(block[0x04].value) >= 1
    assert 0 < with_private < len(hospital)


def test_pixel_data_decodes(datasets: list[Dataset]) -> None:
    decoded = Counter()
    for ds in datasets:
        if "PixelData" not in ds:
            continue
        arr = ds.pixel_array
        frames = int(ds.get("NumberOfFrames", 1))
        expected = (int(ds.Rows), int(ds.Columns))
        if frames > 1:
            expected = (frames, *expected)
        if int(ds.SamplesPerPixel) > 1:
            expected = (*expected, int(ds.SamplesPerPixel))
        assert arr.shape == expected
        assert arr.max() > arr.min()
        decoded[str(ds.file_meta.TransferSyntaxUID)] += 1
    assert set(decoded) == {EXPLICIT_LE, IMPLICIT_LE, JPEG_LOSSLESS, J2K_LOSSLESS, RLE_LOSSLESS}


def test_ct_pixels_are_16_bit(datasets: list[Dataset]) -> None:
    ct = [ds for ds in datasets if ds.Modality == "CT"]
    assert len(ct) >= 3
    for ds in ct:
        assert ds.BitsAllocated == 16
        assert ds.pixel_array.dtype.itemsize == 2


def test_us_multiframe(datasets: list[Dataset]) -> None:
    us = [ds for ds in datasets if ds.SOPClassUID == US_MULTIFRAME_IMAGE_STORAGE]
    assert us
    for ds in us:
        assert int(ds.NumberOfFrames) >= 3
        assert ds.pixel_array.shape[0] == int(ds.NumberOfFrames)


def test_basic_text_sr(datasets: list[Dataset]) -> None:
    srs = [ds for ds in datasets if ds.SOPClassUID == BASIC_TEXT_SR_STORAGE]
    assert srs
    for ds in srs:
        assert ds.Modality == "SR"
        assert ds.ValueType == "CONTAINER"
        assert ds.CompletionFlag in ("COMPLETE", "PARTIAL")
        assert ds.VerificationFlag in ("VERIFIED", "UNVERIFIED")
        assert ds.ConceptNameCodeSequence[0].CodeValue
        text_items = [it for it in ds.ContentSequence if it.ValueType == "TEXT"]
        assert text_items
        assert text_items[0].TextValue
        assert text_items[0].ConceptNameCodeSequence[0].CodeMeaning


def test_encapsulated_pdf(datasets: list[Dataset]) -> None:
    pdfs = [ds for ds in datasets if ds.SOPClassUID == ENCAPSULATED_PDF_STORAGE]
    assert pdfs
    for ds in pdfs:
        doc = bytes(ds.EncapsulatedDocument)
        assert ds["EncapsulatedDocument"].VR == "OB"
        assert len(doc) % 2 == 0
        assert ds.MIMETypeOfEncapsulatedDocument == "application/pdf"
        assert ds.DocumentTitle
        pdf = doc[: int(ds.EncapsulatedDocumentLength)]
        assert pdf.startswith(b"%PDF-1.")
        assert pdf.rstrip().endswith(b"%%EOF")
        startxref = int(pdf.rsplit(b"startxref", 1)[1].split()[0])
        assert pdf[startxref:].startswith(b"xref")


def test_scale_three(tmp_path: Path, hospital: list[GeneratedInstance]) -> None:
    big = generate_hospital(tmp_path, seed=0, scale=3)
    assert len(big) == 3 * len(hospital)
    sops = [i.sop_instance_uid for i in big]
    assert len(set(sops)) == len(sops)
    assert len({i.study_uid for i in big}) == 3 * len({i.study_uid for i in hospital})
    assert len({i.series_uid for i in big}) == 3 * len({i.series_uid for i in hospital})
    assert len({i.patient_id for i in big}) == 3 * len({i.patient_id for i in hospital})
    assert len(list(tmp_path.glob("*.dcm"))) == len(big)
    # same mix per copy, and the first copy is the scale=1 hospital
    assert Counter(i.modality for i in big) == Counter(
        {k: 3 * v for k, v in Counter(i.modality for i in hospital).items()}
    )
    assert [i.sop_instance_uid for i in big[: len(hospital)]] == [
        i.sop_instance_uid for i in hospital
    ]


@pytest.mark.parametrize("kwargs", [{"seed": -1}, {"scale": 0}])
def test_invalid_arguments(tmp_path: Path, kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        generate_hospital(tmp_path, **kwargs)


def test_uid_entropy_parts_are_separated() -> None:
    # pydicom's generate_uid() concatenates entropy sources without a separator;
    # the generator must keep ("1", "12") and ("11", "2") apart (copy 1/study 12
    # vs copy 11/study 2 at scale >= 12).
    assert hospital_uid(0, "study", 1, 12) != hospital_uid(0, "study", 11, 2)
    assert hospital_uid(0, "study", 1) == hospital_uid(0, "study", 1)
    assert hospital_uid(0, "study", 1) != hospital_uid(1, "study", 1)
