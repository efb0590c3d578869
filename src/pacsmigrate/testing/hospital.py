"""A deterministic ("seeded") generated hospital of DICOM Part 10 files.

Used by tests, the demo and benchmarks.  :func:`generate_hospital` writes a
small but varied corpus (CT, MR, CR, US multi-frame, SR, encapsulated PDF;
uncompressed, JPEG Lossless, JPEG 2000 Lossless and RLE Lossless transfer
syntaxes; patient names in several character sets; private tags) and returns
one :class:`GeneratedInstance` per written file.

Everything is derived from ``seed`` and ``scale``: generating twice with the
same arguments gives byte-identical files and identical UIDs.  Compressed
pixel data that cannot be encoded locally (JPEG Lossless) and the raw,
charset-encoded patient names are taken from files shipped with pydicom
(``pydicom/data/test_files`` and ``pydicom/data/charset_files``), so no
network access is needed.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cache
from pathlib import Path

import numpy as np
import pydicom
from pydicom.charset import convert_encodings
from pydicom.data import get_charset_files, get_testdata_file
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    PYDICOM_ROOT_UID,
    UID,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLosslessSV1,
    RLELossless,
    generate_uid,
)
from pydicom.valuerep import PersonName

__all__ = [
    "GeneratedInstance",
    "generate_hospital",
    "PRIVATE_CREATOR",
    "PRIVATE_GROUP",
    "UID_PREFIX",
    "CT_IMAGE_STORAGE",
    "MR_IMAGE_STORAGE",
    "CR_IMAGE_STORAGE",
    "US_MULTIFRAME_IMAGE_STORAGE",
    "BASIC_TEXT_SR_STORAGE",
    "ENCAPSULATED_PDF_STORAGE",
]

UID_PREFIX = PYDICOM_ROOT_UID
PRIVATE_GROUP = 0x0009
PRIVATE_CREATOR = "PACSMIGRATE TEST"

CT_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.2")
MR_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.4")
CR_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.1")
US_MULTIFRAME_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.3.1")
BASIC_TEXT_SR_STORAGE = UID("1.2.840.10008.5.1.4.1.1.88.11")
ENCAPSULATED_PDF_STORAGE = UID("1.2.840.10008.5.1.4.1.1.104.1")

# Source of the pre-encoded JPEG Lossless (Process 14, SV1) pixel data.
_JPEG_LOSSLESS_SOURCE = "SC_rgb_jpeg_gdcm.dcm"
_PIXEL_ATTRIBUTES = (
    "Rows",
    "Columns",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "PlanarConfiguration",
    "NumberOfFrames",
)
_IMAGE_SIZE = 64
_US_FRAMES = 6


@dataclass(frozen=True)
class GeneratedInstance:
    """One generated DICOM file and its key identifiers."""

    path: Path
    patient_id: str
    study_uid: str
    series_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    modality: str


@dataclass(frozen=True)
class _Patient:
    name: str  # ASCII name, used when charset_file is None
    charset_file: str | None  # pydicom charset file providing a raw PatientName
    sex: str
    birth_year: int


@dataclass(frozen=True)
class _Series:
    kind: str  # key into _SERIES_KINDS
    count: int
    description: str


@dataclass(frozen=True)
class _Study:
    patient: int
    year: int
    description: str
    series: tuple[_Series, ...]


@dataclass(frozen=True)
class _Kind:
    sop_class: UID
    transfer_syntax: UID
    modality: str
    private_tags: bool = False


_SERIES_KINDS: dict[str, _Kind] = {
    "ct": _Kind(CT_IMAGE_STORAGE, ExplicitVRLittleEndian, "CT", private_tags=True),
    "mr": _Kind(MR_IMAGE_STORAGE, ImplicitVRLittleEndian, "MR"),
    "cr_jpegll": _Kind(CR_IMAGE_STORAGE, JPEGLosslessSV1, "CR"),
    "mr_j2k": _Kind(MR_IMAGE_STORAGE, JPEG2000Lossless, "MR"),
    "ct_rle": _Kind(CT_IMAGE_STORAGE, RLELossless, "CT", private_tags=True),
    "us_mf": _Kind(US_MULTIFRAME_IMAGE_STORAGE, RLELossless, "US"),
    "sr": _Kind(BASIC_TEXT_SR_STORAGE, ExplicitVRLittleEndian, "SR"),
    "pdf": _Kind(ENCAPSULATED_PDF_STORAGE, ExplicitVRLittleEndian, "DOC"),
}

_PATIENTS: tuple[_Patient, ...] = (
    _Patient("DOE^JOHN", None, "M", 1950),
    _Patient("", "chrGerm.dcm", "M", 1962),  # ISO_IR 100
    _Patient("", "chrH31.dcm", "M", 1971),  # \ISO 2022 IR 87
    _Patient("", "chrRuss.dcm", "F", 1980),  # ISO_IR 144
    _Patient("", "chrGreek.dcm", "M", 1945),  # ISO_IR 126
    _Patient("", "chrX1.dcm", "M", 1990),  # ISO_IR 192
    _Patient("", "chrKoreanMulti.dcm", "F", 1985),  # \ISO 2022 IR 149
    _Patient("", "chrArab.dcm", "M", 1958),  # ISO_IR 127
)

_STUDIES: tuple[_Study, ...] = (
    _Study(0, 2015, "CT CHEST", (_Series("ct", 8, "AXIAL 5MM"),)),
    _Study(0, 2025, "CT CHEST FOLLOW-UP", (_Series("ct", 6, "AXIAL 5MM"),)),
    _Study(
        1,
        2016,
        "MR BRAIN",
        (_Series("mr", 6, "T1 AXIAL"), _Series("mr", 4, "T2 SAGITTAL")),
    ),
    _Study(
        2,
        2017,
        "CR CHEST",
        (_Series("cr_jpegll", 1, "PA"), _Series("sr", 1, "REPORT")),
    ),
    _Study(3, 2018, "MR KNEE", (_Series("mr_j2k", 4, "PD FS CORONAL"),)),
    _Study(4, 2019, "CT ABDOMEN", (_Series("ct_rle", 4, "PORTAL VENOUS"),)),
    _Study(
        5,
        2020,
        "US ABDOMEN",
        (_Series("us_mf", 2, "CINE LOOPS"), _Series("pdf", 1, "SCANNED REQUEST")),
    ),
    _Study(
        6,
        2021,
        "CT HEAD",
        (_Series("ct", 5, "BRAIN 3MM"), _Series("sr", 1, "REPORT")),
    ),
    _Study(
        7,
        2022,
        "MR SPINE",
        (_Series("mr", 5, "T2 SAGITTAL"), _Series("pdf", 1, "OUTSIDE REPORT")),
    ),
    _Study(3, 2024, "CT CHEST", (_Series("ct", 4, "AXIAL 2MM"),)),
)


def generate_hospital(out_dir: Path, *, seed: int = 0, scale: int = 1) -> list[GeneratedInstance]:
    """Write DICOM Part 10 files into out_dir (one file per instance, created if missing).

    Same seed+scale -> byte-identical files and identical UIDs.
    ``scale`` copies of the patient set are generated, each with distinct
    patient IDs and UIDs.  The first returned instance is always the first
    CT slice of the first study (a "known" instance for preflight checks).
    Files are named ``<SOPInstanceUID>.dcm``.
    """
    if seed < 0:
        raise ValueError("seed must be >= 0")
    if scale < 1:
        raise ValueError("scale must be >= 1")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    instances: list[GeneratedInstance] = []
    for copy_no in range(scale):
        for study_no, study in enumerate(_STUDIES):
            instances.extend(_write_study(out, seed, copy_no, study_no, study))
    return instances


# --------------------------------------------------------------------------
# identifiers


def _uid(seed: int, *parts: object) -> UID:
    """Deterministic UID from the seed and a path of identifying parts."""
    # generate_uid() concatenates its sources without a separator, so join
    # them here: ("1", "23") and ("12", "3") must not give the same UID.
    entropy = "/".join(["pacsmigrate-hospital", str(seed), *(str(p) for p in parts)])
    return generate_uid(prefix=UID_PREFIX, entropy_srcs=[entropy])


def _rng(seed: int, *parts: int) -> np.random.Generator:
    return np.random.default_rng([seed, *parts])


def _patient_id(seed: int, copy_no: int, patient_no: int) -> str:
    return f"PM{seed}-{copy_no:04d}-{patient_no:02d}"


def _accession(seed: int, copy_no: int, study_no: int) -> str:
    return f"A{seed % 10000:04d}{copy_no:05d}{study_no:02d}"


def _study_datetime(seed: int, copy_no: int, study_no: int, year: int) -> tuple[str, str]:
    rng = _rng(seed, copy_no, study_no, 0xDA7E)
    day = date(year, 1, 1) + timedelta(days=int(rng.integers(0, 365)))
    hour, minute, sec = (int(v) for v in rng.integers([7, 0, 0], [19, 60, 60]))
    return day.strftime("%Y%m%d"), f"{hour:02d}{minute:02d}{sec:02d}"


# --------------------------------------------------------------------------
# study / series / instance assembly


def _write_study(
    out: Path, seed: int, copy_no: int, study_no: int, study: _Study
) -> list[GeneratedInstance]:
    patient_no = study.patient
    base = Dataset()
    _add_patient(base, seed, copy_no, patient_no)
    study_date, study_time = _study_datetime(seed, copy_no, study_no, study.year)
    base.StudyInstanceUID = _uid(seed, "study", copy_no, study_no)
    base.StudyDate = study_date
    base.StudyTime = study_time
    base.AccessionNumber = _accession(seed, copy_no, study_no)
    base.StudyID = f"S{study_no + 1}"
    base.StudyDescription = study.description
    base.ReferringPhysicianName = "WELBY^MARCUS"
    base.Manufacturer = "PACSMIGRATE"
    base.InstitutionName = "PACSMIGRATE GENERAL HOSPITAL"
    written: list[GeneratedInstance] = []
    for series_no, series in enumerate(study.series):
        ids = (seed, copy_no, study_no, series_no)
        for instance_no in range(series.count):
            ds = copy.deepcopy(base)
            _add_series(ds, series, ids)
            _add_instance(ds, series, ids, instance_no)
            written.append(_write(out, ds))
    return written


def _add_patient(ds: Dataset, seed: int, copy_no: int, patient_no: int) -> None:
    patient = _PATIENTS[patient_no]
    if patient.charset_file is None:
        ds.PatientName = patient.name
    else:
        charset, raw_name = _charset_name(patient.charset_file)
        ds.SpecificCharacterSet = charset
        ds.PatientName = PersonName(raw_name, encodings=convert_encodings(charset))
    ds.PatientID = _patient_id(seed, copy_no, patient_no)
    rng = _rng(seed, copy_no, patient_no, 0xB1)
    birth = date(patient.birth_year, 1, 1) + timedelta(days=int(rng.integers(0, 365)))
    ds.PatientBirthDate = birth.strftime("%Y%m%d")
    ds.PatientSex = patient.sex


def _add_series(ds: Dataset, series: _Series, ids: tuple[int, int, int, int]) -> None:
    seed, copy_no, study_no, series_no = ids
    kind = _SERIES_KINDS[series.kind]
    ds.SeriesInstanceUID = _uid(seed, "series", copy_no, study_no, series_no)
    ds.Modality = kind.modality
    ds.SeriesNumber = series_no + 1
    ds.SeriesDescription = series.description
    ds.SeriesDate = ds.StudyDate
    ds.SeriesTime = ds.StudyTime


def _add_instance(
    ds: Dataset, series: _Series, ids: tuple[int, int, int, int], instance_no: int
) -> None:
    seed, copy_no, study_no, series_no = ids
    kind = _SERIES_KINDS[series.kind]
    sop_uid = _uid(seed, "instance", copy_no, study_no, series_no, instance_no)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = kind.sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.file_meta.TransferSyntaxUID = kind.transfer_syntax
    ds.SOPClassUID = kind.sop_class
    ds.SOPInstanceUID = sop_uid
    ds.InstanceNumber = instance_no + 1
    ds.ContentDate = ds.StudyDate
    ds.ContentTime = ds.StudyTime
    rng = _rng(seed, copy_no, study_no, series_no, instance_no)
    _BUILDERS[series.kind](ds, rng, instance_no)
    if kind.private_tags:
        _add_private_tags(ds, instance_no)
    # compress() rewrites the transfer syntax; it must match the series kind
    if ds.file_meta.TransferSyntaxUID != kind.transfer_syntax:
        raise RuntimeError(f"{series.kind}: unexpected transfer syntax")
    if ds.SOPInstanceUID != sop_uid:
        raise RuntimeError(f"{series.kind}: SOPInstanceUID was replaced")


def _write(out: Path, ds: Dataset) -> GeneratedInstance:
    path = out / f"{ds.SOPInstanceUID}.dcm"
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return GeneratedInstance(
        path=path,
        patient_id=str(ds.PatientID),
        study_uid=str(ds.StudyInstanceUID),
        series_uid=str(ds.SeriesInstanceUID),
        sop_instance_uid=str(ds.SOPInstanceUID),
        sop_class_uid=str(ds.SOPClassUID),
        transfer_syntax_uid=str(ds.file_meta.TransferSyntaxUID),
        modality=str(ds.Modality),
    )


# --------------------------------------------------------------------------
# shipped pydicom data (read once)


@cache
def _charset_name(filename: str) -> tuple[str | list[str], bytes]:
    """SpecificCharacterSet and the raw (still encoded) PatientName bytes."""
    paths = get_charset_files(filename)
    if not paths:
        raise FileNotFoundError(f"pydicom charset file {filename!r} not found")
    src = pydicom.dcmread(paths[0])
    raw = src.get_item(0x00100010)
    if raw is None or not isinstance(raw.value, bytes):
        raise ValueError(f"{filename}: no raw PatientName")
    charset = src.SpecificCharacterSet
    charset_value = list(charset) if not isinstance(charset, str) else str(charset)
    return charset_value, raw.value.rstrip(b" \x00")


@cache
def _jpeg_lossless_source() -> Dataset:
    path = get_testdata_file(_JPEG_LOSSLESS_SOURCE)
    if path is None:
        raise FileNotFoundError(f"pydicom test file {_JPEG_LOSSLESS_SOURCE!r} not found")
    src = pydicom.dcmread(path)
    if src.file_meta.TransferSyntaxUID != JPEGLosslessSV1:
        raise ValueError(f"{_JPEG_LOSSLESS_SOURCE} is not JPEG Lossless SV1")
    return src


# --------------------------------------------------------------------------
# pixel data


def _phantom(rng: np.random.Generator, position: float, size: int = _IMAGE_SIZE) -> np.ndarray:
    """A smooth 12-bit 'body' phantom with a moving insert and a little noise."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    c = (size - 1) / 2
    body = ((x - c) / (0.45 * size)) ** 2 + ((y - c) / (0.38 * size)) ** 2 <= 1.0
    image = np.where(body, 1000.0, 24.0)
    ix, iy = c + 0.2 * size * np.cos(position), c + 0.15 * size * np.sin(position)
    insert = (x - ix) ** 2 + (y - iy) ** 2 <= (0.1 * size) ** 2
    image = np.where(insert, 1600.0 + 400.0 * np.sin(position), image)
    image += rng.integers(0, 16, size=(size, size))
    return np.clip(image, 0, 4095).astype(np.uint16)


def _set_mono16(ds: Dataset, rows: int, cols: int) -> None:
    ds.Rows = rows
    ds.Columns = cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0


def _add_ct_geometry(ds: Dataset, instance_no: int) -> None:
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SliceThickness = "5.0"
    ds.KVP = "120"
    z_mm = 0.0 - 5.0 * instance_no  # "0.0 -" avoids a "-0.0" for the first slice
    ds.ImagePositionPatient = ["-160.0", "-160.0", f"{z_mm:.1f}"]
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.PixelSpacing = ["5.0", "5.0"]
    ds.RescaleIntercept = "-1024"
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"


def _add_mr_geometry(ds: Dataset, instance_no: int) -> None:
    ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
    ds.ScanningSequence = "SE"
    ds.SequenceVariant = "NONE"
    ds.ScanOptions = ""
    ds.MRAcquisitionType = "2D"
    ds.EchoTime = "15"
    ds.RepetitionTime = "500"
    ds.SliceThickness = "4.0"
    ds.ImagePositionPatient = ["-128.0", "-128.0", f"{4.0 * instance_no:.1f}"]
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.PixelSpacing = ["4.0", "4.0"]


def _build_ct(ds: Dataset, rng: np.random.Generator, instance_no: int) -> None:
    _add_ct_geometry(ds, instance_no)
    _set_mono16(ds, _IMAGE_SIZE, _IMAGE_SIZE)
    ds.PixelData = _phantom(rng, 0.5 * instance_no).tobytes()


def _build_mr(ds: Dataset, rng: np.random.Generator, instance_no: int) -> None:
    _add_mr_geometry(ds, instance_no)
    _set_mono16(ds, _IMAGE_SIZE, _IMAGE_SIZE)
    ds.PixelData = _phantom(rng, 0.7 * instance_no + 1.0).tobytes()


def _build_mr_j2k(ds: Dataset, rng: np.random.Generator, instance_no: int) -> None:
    _add_mr_geometry(ds, instance_no)
    _set_mono16(ds, _IMAGE_SIZE, _IMAGE_SIZE)
    pixels = _phantom(rng, 0.7 * instance_no + 2.0)
    # compress() would otherwise replace SOPInstanceUID with a random UID
    ds.compress(JPEG2000Lossless, pixels, generate_instance_uid=False)


def _build_ct_rle(ds: Dataset, rng: np.random.Generator, instance_no: int) -> None:
    _add_ct_geometry(ds, instance_no)
    _set_mono16(ds, _IMAGE_SIZE, _IMAGE_SIZE)
    pixels = _phantom(rng, 0.5 * instance_no + 3.0)
    ds.compress(RLELossless, pixels, generate_instance_uid=False)


def _build_cr_jpeg_lossless(ds: Dataset, rng: np.random.Generator, instance_no: int) -> None:
    src = _jpeg_lossless_source()
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    for keyword in _PIXEL_ATTRIBUTES:
        if keyword in src:
            setattr(ds, keyword, copy.deepcopy(src[keyword].value))
    ds["PixelData"] = copy.deepcopy(src["PixelData"])


def _build_us_multiframe(ds: Dataset, rng: np.random.Generator, instance_no: int) -> None:
    size = _IMAGE_SIZE
    frames = []
    for frame in range(_US_FRAMES):
        mono = (_phantom(rng, 0.4 * frame + instance_no, size) >> 4).astype(np.uint8)
        tint = np.stack([mono, mono, (mono // 2) + 40], axis=-1)
        frames.append(tint)
    pixels = np.stack(frames).astype(np.uint8)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "ABDOMINAL"]
    ds.Rows = size
    ds.Columns = size
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.NumberOfFrames = _US_FRAMES
    ds.FrameTime = "40.0"
    ds.FrameIncrementPointer = 0x00181063  # FrameTime
    ds.CineRate = 25
    ds.compress(RLELossless, pixels, generate_instance_uid=False)


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def _build_basic_text_sr(ds: Dataset, rng: np.random.Generator, instance_no: int) -> None:
    ds.ValueType = "CONTAINER"
    ds.ConceptNameCodeSequence = Sequence([_code("11528-7", "LN", "Radiology Report")])
    ds.ContinuityOfContent = "SEPARATE"
    ds.CompletionFlag = "COMPLETE"
    ds.VerificationFlag = "UNVERIFIED"
    finding = Dataset()
    finding.RelationshipType = "CONTAINS"
    finding.ValueType = "TEXT"
    finding.ConceptNameCodeSequence = Sequence([_code("121071", "DCM", "Finding")])
    size_mm = int(rng.integers(3, 15))
    finding.TextValue = f"No acute abnormality. Incidental {size_mm} mm nodule."
    impression = Dataset()
    impression.RelationshipType = "CONTAINS"
    impression.ValueType = "TEXT"
    impression.ConceptNameCodeSequence = Sequence([_code("121073", "DCM", "Impression")])
    impression.TextValue = "Follow-up in 12 months."
    ds.ContentSequence = Sequence([finding, impression])


def _tiny_pdf(text: str) -> bytes:
    """A minimal but structurally valid one-page PDF (correct xref offsets)."""
    safe = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    stream = f"BT /F1 12 Tf 40 100 Td ({safe}) Tj ET".encode("ascii")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 300 144] "
        b"/Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref_at = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % off for off in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\n" % (len(objects) + 1)
    out += b"startxref\n%d\n%%%%EOF\n" % xref_at
    return bytes(out)


def _build_encapsulated_pdf(ds: Dataset, rng: np.random.Generator, instance_no: int) -> None:
    pdf = _tiny_pdf(f"pacsmigrate test document {int(rng.integers(1000, 9999))}")
    ds.ConversionType = "WSD"
    ds.BurnedInAnnotation = "YES"
    ds.DocumentTitle = "Scanned Document"
    ds.ConceptNameCodeSequence = Sequence([_code("18748-4", "LN", "Diagnostic imaging report")])
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocumentLength = len(pdf)
    if len(pdf) % 2:
        pdf += b"\x00"
    ds.EncapsulatedDocument = pdf


_BUILDERS = {
    "ct": _build_ct,
    "mr": _build_mr,
    "cr_jpegll": _build_cr_jpeg_lossless,
    "mr_j2k": _build_mr_j2k,
    "ct_rle": _build_ct_rle,
    "us_mf": _build_us_multiframe,
    "sr": _build_basic_text_sr,
    "pdf": _build_encapsulated_pdf,
}


# --------------------------------------------------------------------------
# private tags


def _add_private_tags(ds: Dataset, instance_no: int) -> None:
    """Private block (0009,xx10..) with LO, US, OB and a private sequence."""
    block = ds.private_block(PRIVATE_GROUP, PRIVATE_CREATOR, create=True)
    block.add_new(0x01, "LO", "pacsmigrate private value")
    block.add_new(0x02, "US", instance_no)
    block.add_new(0x03, "OB", bytes(range(16)))
    item = Dataset()
    item_block = item.private_block(PRIVATE_GROUP, PRIVATE_CREATOR, create=True)
    item_block.add_new(0x01, "LO", f"item {instance_no}")
    item.add(DataElement(0x00080100, "SH", "PMT1"))  # CodeValue
    block.add_new(0x04, "SQ", Sequence([item]))
