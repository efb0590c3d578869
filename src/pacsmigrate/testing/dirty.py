"""A deterministic, deliberately dirty DICOM corpus with its exact expected findings.

:func:`generate_dirty_hospital` writes about 60 small files (8x8 MONOCHROME2
images and a few Basic Text SR) into ``<out>/dirty`` in nested folders, some
loose at various depths and many without a ``.dcm`` extension, plus a DICOM
File-set in ``<out>/fileset``.  Ten clean studies (CR, MR, CT, US, SR; 2009 to
2024, one with an empty StudyDate) surround the seeded problems below.  Same
seed -> byte-identical files: UIDs are ``1.2.826.0.1.3680043.10.1234.<seed>.``
plus counters, dates are fixed, nothing depends on the clock.

:attr:`DirtyCorpus.expected` maps every :class:`FindingKind` value to the exact
set of subjects, and :attr:`DirtyCorpus.expected_counts` gives the count of
each ``(kind, subject)``.  Subject and count rules, and what is seeded:

``not_dicom``
    subject = absolute file path, count 1.  A text file, an empty ``.dcm``
    file and a PNG signature + IHDR chunk.
``unreadable_file``
    subject = path, count 1.  (a) a valid Part 10 file cut inside the 4-byte
    length of its first sequence element (meta intact, header truncated;
    ``dcmread`` raises); (b) a file whose declared PixelData length runs 64
    bytes past the end of the file (``dcmread`` is lenient and returns the short
    value: compare the declared length with the file size; a readable instance
    of the same study exists, so that study is in :attr:`studies` either way);
    (c) 128 zero bytes + ``DICM`` + garbage beginning with a group length of
    impossible length 3 (``dcmread`` raises).
``missing_patient_id``
    subject = StudyInstanceUID, count = files of the study without one.  One
    study of 2 files without the element, one study of 1 file with it empty.
    All three share one name and birth date: a missing PatientID (absent or
    empty) is one missing value and takes no part in the identity kinds.
``missing_study_uid`` / ``missing_series_uid`` / ``missing_sop_instance_uid``
    subject = path, count 1; one file each (MediaStorageSOPInstanceUID is
    empty too for the last).  Not in :attr:`studies` / :attr:`instances`.
``missing_sop_class_uid``
    subject = SOPInstanceUID, count 1.  SOPClassUID absent and
    MediaStorageSOPClassUID empty.
``missing_modality``
    subject = SeriesInstanceUID, count = files: one series of 2 (one without
    the element, one empty).
``invalid_uid``
    subject = the raw value minus the one legal trailing NUL pad (only when the
    stored length is even and ends in NUL), NUL shown as ``\\x00``; count =
    files.  A 72+ character SeriesInstanceUID (2 files), a SOPInstanceUID with
    a ``05`` component, a StudyInstanceUID with letters, and a
    SeriesInstanceUID stored as ``<uid>\\x00\\x00`` (subject ``<uid>\\x00``).
    Apart from the last, the values have even length, so nothing is padded.
``unknown_charset``
    subject = SpecificCharacterSet as written, count = files: ``ISO-IR 100``
    (2 files), ``LATIN1`` (1).  Their texts are ASCII.
``undecodable_text``
    subject = SOPInstanceUID, count 1: UTF-8 PatientName bytes with no
    SpecificCharacterSet (default repertoire), and Latin-1 bytes under
    ``ISO_IR 192``.
``private_creator``
    subject = creator, count = files carrying it (once per file):
    ``SIEMENS CSA HEADER`` (2 files, one with blocks in groups 0019 and 0029),
    ``GEMS_IDEN_01`` (1), ``ACME 1.1`` (1).  No other file has private tags.
``study_under_two_patients``
    subject = StudyInstanceUID, count = distinct PatientIDs (2).
``sop_uid_in_two_places``
    subject = SOPInstanceUID, count = files (2): byte-identical copies at two
    paths in one series; and one SOPInstanceUID in two different studies.
``patient_id_conflict``
    subject = PatientID, count = distinct (PatientName, PatientBirthDate)
    pairs (2): one ID with two spellings of the name, one ID with two birth
    dates; one study each.
``patient_under_several_ids``
    subject = ``f"{PatientName}|{PatientBirthDate}"`` (decoded name), count =
    distinct PatientIDs (2).
``past_retention``
    for a retention of :data:`RETENTION_YEARS` years counted back from
    :data:`RETENTION_REFERENCE` (StudyDate before :data:`RETENTION_CUTOFF`;
    empty dates are not past retention): subject = StudyInstanceUID, count 1.
    Only three clean studies (2009, 2012, 2014) are that old.

``slice_truncated``, ``duplicate_rows``, ``zero_image_study``,
``instance_count_mismatch`` and ``target_refuses`` come from network peers and
map to empty sets.  Unreadable and non-DICOM files are in no other kind.

The File-set in :attr:`DirtyCorpus.dicomdir_root` holds three clean studies
written with :class:`pydicom.fileset.FileSet` and one more file that the
DICOMDIR does not reference: an inventory that reads the DICOMDIR must report
only :attr:`DirtyCorpus.dicomdir_instances`, never
:attr:`DirtyCorpus.unreferenced`.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.fileset import FileSet
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from pacsmigrate.ledger.findings import FindingKind
from pacsmigrate.testing.hospital import (
    BASIC_TEXT_SR_STORAGE,
    CR_IMAGE_STORAGE,
    CT_IMAGE_STORAGE,
    MR_IMAGE_STORAGE,
    _build_basic_text_sr,
    _set_mono16,
)

__all__ = [
    "DirtyCorpus",
    "RETENTION_CUTOFF",
    "RETENTION_REFERENCE",
    "RETENTION_YEARS",
    "UID_ROOT",
    "generate_dirty_hospital",
]

UID_ROOT = "1.2.826.0.1.3680043.10.1234."
RETENTION_YEARS = 10
RETENTION_REFERENCE = date(2026, 1, 1)
RETENTION_CUTOFF = "20160101"  # StudyDate < this (and not empty): past retention

_US_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.6.1")
_SOP_CLASSES = {
    "CT": CT_IMAGE_STORAGE,
    "MR": MR_IMAGE_STORAGE,
    "CR": CR_IMAGE_STORAGE,
    "US": _US_IMAGE_STORAGE,
    "SR": BASIC_TEXT_SR_STORAGE,
}
_SIZE = 8
_PREAMBLE = b"\x00" * 128
_K = FindingKind


@dataclass
class DirtyCorpus:
    """A generated dirty corpus and what a checker must report about it.

    ``root`` is the folder to inventory and ``files`` every file under it;
    ``studies`` / ``instances`` are the UIDs a complete inventory of ``root``
    lists (readable files with all three UIDs, ``header_files``).
    ``dicomdir_root`` is the File-set: its DICOMDIR references exactly
    ``dicomdir_instances``; ``unreferenced`` lies in the folder but not in it.
    """

    root: Path
    dicomdir_root: Path
    files: list[Path]
    expected: dict[str, set[str]]
    expected_counts: dict[tuple[str, str], int]
    studies: set[str]
    instances: set[str]
    dicomdir_instances: set[str] = field(default_factory=set)
    unreferenced: set[str] = field(default_factory=set)
    header_files: list[Path] = field(default_factory=list)  # readable, all three UIDs

    def dimse_headers(self) -> list[Dataset]:
        """Headers (no pixel data) of the readable files with Study+Series+SOP UIDs.

        Both copies of the duplicated SOP instance are included, as a peer
        holding both files would answer them.
        """
        with _quiet():
            return [pydicom.dcmread(p, stop_before_pixels=True) for p in self.header_files]


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence pydicom's warnings about the invalid values written on purpose."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=r"pydicom(\.|$)")
        yield


# --------------------------------------------------------------------------
# model


@dataclass(frozen=True)
class _Patient:
    pid: str | None  # None: no PatientID element
    name: bytes  # raw PatientName bytes
    birth: str
    sex: str
    charset: str | None = None  # raw SpecificCharacterSet; None: no element


@dataclass
class _Study:
    uid: str
    date: str
    description: str
    patient: _Patient
    number: int
    series: int = 0


@dataclass
class _Series:
    study: _Study
    uid: str
    modality: str
    number: int
    instances: int = 0


def _ascii(pid: str | None, name: str, birth: str, sex: str) -> _Patient:
    return _Patient(pid, name.encode("ascii"), birth, sex)


class _Writer:
    """Hands out UIDs, builds instances, writes files and records expectations."""

    def __init__(self, root: Path, seed: int, uid_prefix: str) -> None:
        self.root = root
        self.seed = seed
        self.prefix = uid_prefix
        self.counters: dict[int, int] = {}
        self.files: list[Path] = []
        self.header_files: list[Path] = []
        self.studies: dict[str, str] = {}  # StudyInstanceUID -> StudyDate
        self.instances: set[str] = set()
        self.expected: dict[str, set[str]] = {kind.value: set() for kind in FindingKind}
        self.counts: dict[tuple[str, str], int] = {}

    # identifiers -----------------------------------------------------------
    def uid(self, kind: int) -> str:
        self.counters[kind] = self.counters.get(kind, 0) + 1
        return f"{self.prefix}{kind}.{self.counters[kind]}"

    def pid(self, number: int) -> str:
        return f"DP{self.seed}-{number:03d}"

    def study(self, patient: _Patient, study_date: str, description: str) -> _Study:
        number = self.counters.get(1, 0) + 1
        return _Study(self.uid(1), study_date, description, patient, number)

    def series(self, study: _Study, modality: str) -> _Series:
        study.series += 1
        return _Series(study, self.uid(2), modality, study.series)

    def instance(self, series: _Series, patient: _Patient | None = None) -> Dataset:
        series.instances += 1
        sop_uid = self.uid(3)
        rng = np.random.default_rng([self.seed, self.counters[3]])
        return _build_instance(series, patient or series.study.patient, sop_uid, rng)

    # files -----------------------------------------------------------------
    def path(self, rel: str) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        self.files.append(path)
        return path

    def write(self, rel: str, ds: Dataset) -> Path:
        """Write a readable Part 10 file and register its identifiers."""
        path = self.path(rel)
        path.write_bytes(_encode(ds))
        uids = [_text(ds, kw) for kw in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")]
        if all(uids):
            self.header_files.append(path)
            self.studies[uids[0]] = _text(ds, "StudyDate")
            self.instances.add(uids[2])
        return path

    def write_bytes(self, rel: str, data: bytes) -> Path:
        path = self.path(rel)
        path.write_bytes(data)
        return path

    def expect(self, kind: FindingKind, subject: str, count: int = 1) -> None:
        self.expected[kind.value].add(subject)
        key = (kind.value, subject)
        self.counts[key] = self.counts.get(key, 0) + count


def _text(ds: Dataset, keyword: str) -> str:
    return str(ds.get(keyword, "") or "").rstrip("\x00 ")


# --------------------------------------------------------------------------
# instances


def _build_instance(
    series: _Series, patient: _Patient, sop_uid: str, rng: np.random.Generator
) -> Dataset:
    study = series.study
    ds = Dataset()
    _set_patient(ds, patient)
    ds.StudyInstanceUID = study.uid
    ds.StudyDate = study.date
    ds.StudyTime = "093000"
    ds.AccessionNumber = f"ACC{study.number:04d}"
    ds.StudyID = str(study.number)
    ds.StudyDescription = study.description
    ds.ReferringPhysicianName = ""
    ds.InstitutionName = "PACSMIGRATE DIRTY HOSPITAL"
    ds.SeriesInstanceUID = series.uid
    ds.Modality = series.modality
    ds.SeriesNumber = series.number
    ds.SOPClassUID = _SOP_CLASSES[series.modality]
    ds.SOPInstanceUID = sop_uid
    ds.InstanceNumber = series.instances
    ds.ContentDate = study.date
    ds.ContentTime = "093000"
    _add_content(ds, series.modality, rng)
    transfer_syntax = ImplicitVRLittleEndian if series.modality == "MR" else ExplicitVRLittleEndian
    ds.file_meta = _file_meta(str(ds.SOPClassUID), sop_uid, transfer_syntax)
    return ds


def _set_patient(ds: Dataset, patient: _Patient) -> None:
    if patient.charset is not None:
        ds.add(DataElement(0x00080005, "CS", patient.charset))
    ds.add(DataElement(0x00100010, "PN", patient.name))
    if patient.pid is not None:
        ds.PatientID = patient.pid
    ds.PatientBirthDate = patient.birth
    ds.PatientSex = patient.sex


def _add_content(ds: Dataset, modality: str, rng: np.random.Generator) -> None:
    if modality == "SR":
        _build_basic_text_sr(ds, rng, int(ds.InstanceNumber))
        return
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    if modality == "US":
        ds.Rows = ds.Columns = _SIZE
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = ds.BitsStored = 8
        ds.HighBit = 7
        ds.PixelRepresentation = 0
        ds.PixelData = rng.integers(0, 256, (_SIZE, _SIZE), dtype=np.uint8).tobytes()
        return
    _set_mono16(ds, _SIZE, _SIZE)
    ds.PixelData = rng.integers(0, 4096, (_SIZE, _SIZE), dtype=np.uint16).tobytes()


def _file_meta(sop_class: str, sop_uid: str, transfer_syntax: UID) -> FileMetaDataset:
    """Complete file meta written as is (empty values allowed)."""
    meta = FileMetaDataset()
    meta.FileMetaInformationGroupLength = 0  # recomputed on write
    meta.FileMetaInformationVersion = b"\x00\x01"
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    meta.TransferSyntaxUID = transfer_syntax
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "PACSMIGRATE_DRT"
    return meta


def _encode(ds: Dataset) -> bytes:
    """Part 10 bytes; the meta is written as given, so empty required values survive."""
    ds.preamble = _PREAMBLE
    buffer = io.BytesIO()
    with _quiet():
        pydicom.dcmwrite(buffer, ds, enforce_file_format=False)
    return buffer.getvalue()


def _even(uid: str) -> str:
    """Lengthen a UID by one digit if needed, so it is stored without a pad byte."""
    return uid + "1" if len(uid) % 2 else uid


# --------------------------------------------------------------------------
# clean studies


_CLEAN_STUDIES: tuple[tuple[int, str, str, tuple[tuple[str, int], ...]], ...] = (
    # (patient, StudyDate, description, ((modality, instances), ...))
    (1, "20090315", "CR CHEST", (("CR", 1),)),
    (2, "20120620", "MR BRAIN", (("MR", 1), ("MR", 2))),
    (3, "20140911", "CT ABDOMEN", (("CT", 2),)),
    (4, "20161003", "US THYROID", (("US", 1),)),
    (5, "20180214", "CT CHEST", (("CT", 2), ("SR", 1))),
    (6, "20190730", "MR KNEE", (("MR", 2),)),
    (7, "", "CR HAND", (("CR", 1),)),
    (8, "20210405", "US ABDOMEN", (("US", 1), ("SR", 1))),
    (1, "20230118", "CT HEAD", (("CT", 1),)),
    (3, "20240909", "MR SPINE", (("MR", 1),)),
)


def _clean_patients(w: _Writer) -> dict[int, _Patient]:
    return {
        1: _ascii(w.pid(1), "DOE^JOHN", "19500312", "M"),
        2: _Patient(w.pid(2), "MÜLLER^ANNA".encode("latin-1"), "19620704", "F", "ISO_IR 100"),
        3: _ascii(w.pid(3), "SMITH^JANE", "19710115", "F"),
        4: _ascii(w.pid(4), "JOHNSON^ROBERT", "19801122", "M"),
        5: _Patient(w.pid(5), "GARCÍA^LUCÍA".encode(), "19850509", "F", "ISO_IR 192"),
        6: _ascii(w.pid(6), "WANG^LEI", "19901230", "M"),
        7: _ascii(w.pid(7), "NGUYEN^THI", "19751002", "F"),
        8: _ascii(w.pid(8), "TANAKA^HIRO", "19580418", "M"),
    }


def _seed_clean(w: _Writer, patients: dict[int, _Patient]) -> None:
    for number, (patient_no, study_date, description, layout) in enumerate(_CLEAN_STUDIES, 1):
        study = w.study(patients[patient_no], study_date, description)
        ext = ".dcm" if number % 2 else ""
        for modality, count in layout:
            series = w.series(study, modality)
            for _ in range(count):
                ds = w.instance(series)
                rel = f"PAT{patient_no}/STUDY{number}/SER{series.number}/IM{series.instances}"
                w.write(rel + ext, ds)


# --------------------------------------------------------------------------
# junk and broken files


_PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x08\x00\x00\x00\x08\x08\x00"
    b"\x00\x00\x00\xe1d\xe1W\x00\x00\x00\x00IEND\xaeB`\x82"
)


def _seed_not_dicom(w: _Writer) -> None:
    notes = b"Scanned 2019-03-02 by night shift.\nDo not delete: needed for audit.\n"
    for rel, data in (
        ("README.txt", notes),
        ("PAT4/empty.dcm", b""),
        ("PAT6/STUDY6/preview", _PNG),
    ):
        w.expect(_K.NOT_DICOM, str(w.write_bytes(rel, data)))


def _seed_unreadable(w: _Writer, patients: dict[int, _Patient]) -> None:
    study = w.study(patients[4], "20170412", "CT NECK")
    series = w.series(study, "CT")
    w.write("incoming/ct_neck/IM1", w.instance(series))
    whole = _encode(w.instance(series))  # the declared 128 pixel bytes end the file
    cut = w.write_bytes("incoming/ct_neck/IM2", whole[:-64])
    w.expect(_K.UNREADABLE_FILE, str(cut))

    other = w.series(w.study(patients[6], "20170413", "CT SINUS"), "CT")
    ds = w.instance(other)
    code = Dataset()
    code.CodeValue = "CTSIN"
    code.CodingSchemeDesignator = "99PMT"
    code.CodeMeaning = "CT sinus"
    ds.ProcedureCodeSequence = [code]
    data = _encode(ds)
    at = data.index(b"\x08\x00\x32\x10SQ\x00\x00") + 10  # inside the 4-byte length
    w.expect(_K.UNREADABLE_FILE, str(w.write_bytes("incoming/IM_SINUS", data[:at])))

    garbage = np.random.default_rng([w.seed, 0xBAD]).integers(0, 256, 256, dtype=np.uint8)
    blob = _PREAMBLE + b"DICM" + b"\x02\x00\x00\x00UL\x03\x00" + garbage.tobytes()
    w.expect(_K.UNREADABLE_FILE, str(w.write_bytes("incoming/old/recovered.dcm", blob)))


# --------------------------------------------------------------------------
# header problems


def _seed_missing_patient_id(w: _Writer) -> None:
    absent = _ascii(None, "UNKNOWN^PATIENT", "19700101", "O")
    empty = _ascii("", "UNKNOWN^PATIENT", "19700101", "O")
    study = w.study(absent, "20180502", "CR CHEST PORTABLE")
    series = w.series(study, "CR")
    for number in (1, 2):
        w.write(f"unmatched/{study.number}/{number}", w.instance(series))
        w.expect(_K.MISSING_PATIENT_ID, study.uid)
    other = w.study(empty, "20180503", "CR CHEST PORTABLE")
    w.write("unmatched/loose_cr.dcm", w.instance(w.series(other, "CR")))
    w.expect(_K.MISSING_PATIENT_ID, other.uid)


def _seed_missing_uids(w: _Writer, patients: dict[int, _Patient]) -> None:
    for keyword, kind, patient_no in (
        ("StudyInstanceUID", _K.MISSING_STUDY_UID, 4),
        ("SeriesInstanceUID", _K.MISSING_SERIES_UID, 6),
        ("SOPInstanceUID", _K.MISSING_SOP_INSTANCE_UID, 7),
    ):
        ds = w.instance(w.series(w.study(patients[patient_no], "20170601", "CT"), "CT"))
        delattr(ds, keyword)
        if keyword == "SOPInstanceUID":
            ds.file_meta.MediaStorageSOPInstanceUID = UID("")
        w.expect(kind, str(w.write(f"PAT{patient_no}/no_{keyword}", ds)))

    ds = w.instance(w.series(w.study(patients[8], "20170602", "CT CHEST"), "CT"))
    del ds.SOPClassUID
    ds.file_meta.MediaStorageSOPClassUID = UID("")
    w.write("archive/2017/06/box7/IM1.dcm", ds)
    w.expect(_K.MISSING_SOP_CLASS_UID, str(ds.SOPInstanceUID))


def _seed_missing_modality(w: _Writer, patients: dict[int, _Patient]) -> None:
    series = w.series(w.study(patients[2], "20200311", "MR PELVIS"), "MR")
    for number in (1, 2):
        ds = w.instance(series)
        if number == 1:
            del ds.Modality
        else:
            ds.Modality = ""
        w.write(f"PAT2/STUDY_NOMOD/{number}", ds)
        w.expect(_K.MISSING_MODALITY, series.uid)


def _seed_invalid_uids(w: _Writer, patients: dict[int, _Patient]) -> None:
    prefix = f"{UID_ROOT}{w.seed}."
    series = w.series(w.study(patients[3], "20170815", "CT LONG UID"), "CT")
    series.uid = _even(prefix + "8." + "1234567890" * 4)
    for number in (1, 2):
        w.write(f"vendor_x/longuid/{number}", w.instance(series))
        w.expect(_K.INVALID_UID, series.uid)

    ds = w.instance(w.series(w.study(patients[5], "20181120", "CT"), "CT"))
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = UID(_even(prefix + "05.1"))
    w.write("IMG0001", ds)  # loose at the top
    w.expect(_K.INVALID_UID, str(ds.SOPInstanceUID))

    study = w.study(patients[1], "20190211", "CR")
    study.uid = _even(prefix + "abc.4")
    w.write("vendor_x/letters/IM1", w.instance(w.series(study, "CR")))
    w.expect(_K.INVALID_UID, study.uid)

    series = w.series(w.study(patients[6], "20190212", "CT"), "CT")
    base = _even(prefix + "9.1")
    ds = w.instance(series)
    ds.add(DataElement(0x0020000E, "UI", (base + "\x00\x00").encode("ascii")))
    w.write("vendor_x/nul_padded.dcm", ds)
    w.expect(_K.INVALID_UID, base + "\\x00")


def _seed_charsets(w: _Writer) -> None:
    latin_typo = _Patient(w.pid(21), b"BERGER^KARL", "19660606", "M", "ISO-IR 100")
    series = w.series(w.study(latin_typo, "20200115", "CT WRIST"), "CT")
    for number in (1, 2):
        w.write(f"PAT21/{number}", w.instance(series))
        w.expect(_K.UNKNOWN_CHARSET, "ISO-IR 100")
    latin1 = _Patient(w.pid(22), b"KOWALSKI^JAN", "19770707", "M", "LATIN1")
    w.write("PAT22/IM1", w.instance(w.series(w.study(latin1, "20200116", "CR"), "CR")))
    w.expect(_K.UNKNOWN_CHARSET, "LATIN1")

    utf8_bare = _Patient(w.pid(23), "GARCÍA^JOSÉ".encode(), "19690909", "M")
    latin_as_utf8 = _Patient(
        w.pid(24), "MÜLLER^HANS".encode("latin-1"), "19630303", "M", "ISO_IR 192"
    )
    for number, patient in ((23, utf8_bare), (24, latin_as_utf8)):
        ds = w.instance(w.series(w.study(patient, "20200117", "CR"), "CR"))
        w.write(f"PAT{number}/IM1.dcm", ds)
        w.expect(_K.UNDECODABLE_TEXT, str(ds.SOPInstanceUID))


def _siemens(ds: Dataset, group: int) -> None:
    block = ds.private_block(group, "SIEMENS CSA HEADER", create=True)
    block.add_new(0x08, "CS", "IMAGE NUM 4")
    block.add_new(0x09, "LO", "20100114")
    block.add_new(0x10, "OB", bytes(range(32)))


def _seed_private(w: _Writer, patients: dict[int, _Patient]) -> None:
    series = w.series(w.study(patients[6], "20210910", "CT SIEMENS"), "CT")
    for number in (1, 2):
        ds = w.instance(series)
        _siemens(ds, 0x0029)
        if number == 1:
            _siemens(ds, 0x0019)  # a second block of the same creator
        w.write(f"PAT6/siemens/{number}", ds)
    w.expect(_K.PRIVATE_CREATOR, "SIEMENS CSA HEADER", 2)

    ds = w.instance(w.series(w.study(patients[8], "20210911", "CT GE"), "CT"))
    block = ds.private_block(0x0009, "GEMS_IDEN_01", create=True)
    block.add_new(0x01, "LO", "CT_LIGHTSPEED")
    block.add_new(0x02, "SH", "CT01")
    block.add_new(0x04, "SH", "LightSpeed16")
    w.write("PAT8/ge/IM1", ds)
    w.expect(_K.PRIVATE_CREATOR, "GEMS_IDEN_01")

    ds = w.instance(w.series(w.study(patients[7], "20210912", "US ACME"), "US"))
    block = ds.private_block(0x0011, "ACME 1.1", create=True)
    block.add_new(0x01, "LO", "acme probe L12")
    block.add_new(0x02, "US", 7)
    block.add_new(0x03, "DS", "2.5")
    w.write("PAT7/acme.dcm", ds)
    w.expect(_K.PRIVATE_CREATOR, "ACME 1.1")


# --------------------------------------------------------------------------
# identity across records


def _seed_duplicates(w: _Writer) -> None:
    roe = _ascii(w.pid(31), "ROE^RICHARD", "19620101", "M")
    poe = _ascii(w.pid(32), "POE^EDGAR", "19700202", "M")
    study = w.study(roe, "20220301", "CT CHEST")
    w.write("merge/a/IM1", w.instance(w.series(study, "CT")))
    w.write("merge/b/IM1", w.instance(w.series(study, "CT"), poe))
    w.expect(_K.STUDY_UNDER_TWO_PATIENTS, study.uid, 2)

    lee = _ascii(w.pid(33), "LEE^MIN", "19880808", "F")
    ds = w.instance(w.series(w.study(lee, "20220302", "CR KNEE"), "CR"))
    w.write("PAT33/STUDY1/IM1", ds)
    w.write("restore/PAT33_IM1_copy", ds)  # byte-identical copy
    w.expect(_K.SOP_UID_IN_TWO_PLACES, str(ds.SOPInstanceUID), 2)

    hall = _ascii(w.pid(34), "HALL^KIM", "19920202", "F")
    first = w.instance(w.series(w.study(hall, "20220303", "MR HEAD"), "MR"))
    second = w.instance(w.series(w.study(hall, "20220304", "MR HEAD"), "MR"))
    second.SOPInstanceUID = second.file_meta.MediaStorageSOPInstanceUID = first.SOPInstanceUID
    w.write("PAT34/STUDY1/IM1", first)
    w.write("PAT34/STUDY2/IM1", second)
    w.expect(_K.SOP_UID_IN_TWO_PLACES, str(first.SOPInstanceUID), 2)


def _seed_identities(w: _Writer) -> None:
    pairs = (
        (_ascii(w.pid(41), "SMITH^ANNA", "19800101", "F"), b"SMITH^ANNE", "19800101"),
        (_ascii(w.pid(42), "JONES^MARK", "19551111", "M"), b"JONES^MARK", "19551112"),
    )
    for number, (patient, name, birth) in enumerate(pairs, 1):
        variant = _Patient(patient.pid, name, birth, patient.sex)
        for which, who in enumerate((patient, variant), 1):
            ds = w.instance(w.series(w.study(who, f"2023030{number}", "CR"), "CR"))
            w.write(f"PAT{40 + number}/STUDY{which}/IM1", ds)
        w.expect(_K.PATIENT_ID_CONFLICT, str(patient.pid), 2)

    for number in (43, 44):
        brown = _ascii(w.pid(number), "BROWN^CHARLIE", "19600606", "M")
        ds = w.instance(w.series(w.study(brown, "20230410", "CT"), "CT"))
        w.write(f"PAT{number}/IM1", ds)
    w.expect(_K.PATIENT_UNDER_SEVERAL_IDS, "BROWN^CHARLIE|19600606", 2)


def _seed_past_retention(w: _Writer) -> None:
    for uid, study_date in sorted(w.studies.items()):
        if study_date and study_date < RETENTION_CUTOFF:
            w.expect(_K.PAST_RETENTION, uid)


# --------------------------------------------------------------------------
# File-set


def _write_fileset(dest: Path, seed: int) -> tuple[set[str], set[str]]:
    """Three studies in a DICOMDIR File-set, plus one file it does not reference."""
    w = _Writer(dest, seed, f"{UID_ROOT}{seed}.50.")
    fs = FileSet()
    fs.ID = "PMDIRTY"
    fs.UID = UID(w.uid(9))
    referenced: set[str] = set()
    for number, (modality, study_date) in enumerate(
        (("CT", "20170505"), ("MR", "20190606"), ("CR", "20220707")), 1
    ):
        patient = _ascii(f"DD{seed}-{number:03d}", f"FILESET^PATIENT{number}", "19700101", "O")
        series = w.series(w.study(patient, study_date, f"{modality} FILESET"), modality)
        for _ in range(2):
            ds = w.instance(series)
            with _quiet():
                fs.add(ds)
            referenced.add(str(ds.SOPInstanceUID))
    dest.mkdir(parents=True, exist_ok=True)
    with _quiet():
        fs.write(dest)
    # pydicom keeps its staging folder until garbage collection; remove it now
    fs._stage["t"].cleanup()
    extra_patient = _ascii(f"DD{seed}-009", "FILESET^STRAY", "19700101", "O")
    extra = w.instance(w.series(w.study(extra_patient, "20230808", "CT STRAY"), "CT"))
    w.write("EXTRA/IM000001", extra)
    return referenced, {str(extra.SOPInstanceUID)}


# --------------------------------------------------------------------------
# entry point


def generate_dirty_hospital(out: Path, seed: int = 7) -> DirtyCorpus:
    """Write the dirty corpus into ``out/dirty`` and a File-set into ``out/fileset``.

    Same seed -> byte-identical files.  See the module docstring for what is
    seeded and for the subject and count rules of :attr:`DirtyCorpus.expected`.
    """
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    with _quiet():
        return _generate(Path(out).absolute(), seed)


def _generate(base: Path, seed: int) -> DirtyCorpus:
    w = _Writer(base / "dirty", seed, f"{UID_ROOT}{seed}.")
    patients = _clean_patients(w)
    _seed_clean(w, patients)
    _seed_not_dicom(w)
    _seed_unreadable(w, patients)
    _seed_missing_patient_id(w)
    _seed_missing_uids(w, patients)
    _seed_missing_modality(w, patients)
    _seed_invalid_uids(w, patients)
    _seed_charsets(w)
    _seed_private(w, patients)
    _seed_duplicates(w)
    _seed_identities(w)
    _seed_past_retention(w)
    referenced, unreferenced = _write_fileset(base / "fileset", seed)
    return DirtyCorpus(
        root=w.root,
        dicomdir_root=base / "fileset",
        files=w.files,
        expected=w.expected,
        expected_counts=w.counts,
        studies=set(w.studies),
        instances=w.instances,
        dicomdir_instances=referenced,
        unreferenced=unreferenced,
        header_files=w.header_files,
    )
