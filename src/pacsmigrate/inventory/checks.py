"""Header checks: what one dataset (a file header or a query answer) says is wrong.

Pure functions over a pydicom ``Dataset``; the results go into a
``FindingsCollector``. They read raw element bytes where pydicom still holds
them (files and DIMSE answers), so a trailing NUL in a UID or a name that does
not decode is seen as stored, before any library tidies it.

Subjects (what a person looks up): the UID of the entity the attribute belongs
to (PatientID -> its study, Modality -> its series, SOPClassUID and text ->
the instance), else the file path, else ``where``.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

from pydicom.charset import convert_encodings, decode_bytes
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag, Tag

from pacsmigrate.ledger.findings import FindingKind, FindingsCollector

__all__ = [
    "DEFINED_CHARSETS",
    "Levels",
    "StudyPatients",
    "check_dataset",
    "private_creators",
    "raw_text",
    "text_of",
    "uid_of",
    "uid_problem",
]

#: Defined terms of SpecificCharacterSet (DICOM PS3.3 C.12.1.1.2), to Python codecs.
DEFINED_CHARSETS: dict[str, str] = {
    "ISO_IR 6": "ascii",
    "ISO_IR 100": "latin_1",
    "ISO_IR 101": "iso8859_2",
    "ISO_IR 109": "iso8859_3",
    "ISO_IR 110": "iso8859_4",
    "ISO_IR 144": "iso_ir_144",
    "ISO_IR 127": "iso_ir_127",
    "ISO_IR 126": "iso_ir_126",
    "ISO_IR 138": "iso_ir_138",
    "ISO_IR 148": "iso_ir_148",
    "ISO_IR 13": "shift_jis",
    "ISO_IR 166": "iso_ir_166",
    "ISO_IR 192": "UTF8",
    "GB18030": "GB18030",
    "GBK": "GBK",
}
_ISO2022 = {
    f"ISO 2022 IR {number}"
    for number in (6, 100, 101, 109, 110, 144, 127, 126, 138, 148, 13, 166, 87, 159, 149, 58)
}
_TEXT_VRS = {"PN", "LO", "SH", "ST", "LT", "UT", "UC"}
_UID_RE = re.compile(r"[0-9.]+")
_UID_KEYS = {
    "STUDY": ("StudyInstanceUID",),
    "SERIES": ("SeriesInstanceUID",),
    "IMAGE": ("SOPInstanceUID", "SOPClassUID"),
}


@dataclass(frozen=True)
class Levels:
    """Which levels a dataset speaks for; a file speaks for all three."""

    study: bool = False
    series: bool = False
    image: bool = False
    text: bool = False  # check character set and text decoding
    private: bool = False  # count private creators

    @classmethod
    def file(cls) -> Levels:
        return cls(study=True, series=True, image=True, text=True, private=True)

    def names(self) -> list[str]:
        flags = (("STUDY", self.study), ("SERIES", self.series), ("IMAGE", self.image))
        return [name for name, on in flags if on]


def raw_text(ds: Dataset, keyword: str) -> str:
    """The value of ``keyword`` as stored: latin-1 decoded raw bytes, pad kept."""
    tag = Tag(keyword)
    if tag not in ds:
        return ""
    element = ds.get_item(tag)
    value = element.value
    if isinstance(value, bytes):
        return value.decode("latin_1")
    if value is None:
        return ""
    return str(value)


def uid_of(ds: Dataset, keyword: str) -> str:
    """A UID as the ledger keys it: the stored value without padding."""
    return raw_text(ds, keyword).strip("\x00 ")


def text_of(ds: Dataset, keyword: str) -> str:
    """A value as the ledger stores it; several values joined by a backslash.

    A value pydicom cannot convert reads as "": the header checks report it."""
    try:
        value = ds.get(keyword)
    except Exception:
        return ""
    if value is None:
        return ""
    if isinstance(value, MultiValue | list):
        return "\\".join(str(item) for item in value)
    return str(value).strip()


def uid_problem(stored: str) -> str:
    """Why ``stored`` (raw, pad kept) breaks PS3.5 9.1, or "" when it is a valid UID."""
    value = stored[:-1] if stored.endswith("\x00") and len(stored) % 2 == 0 else stored
    if value != value.rstrip("\x00 "):
        return "trailing space or NUL"
    if len(value) > 64:
        return f"longer than 64 characters ({len(value)})"
    if not _UID_RE.fullmatch(value):
        return "characters other than digits and dots"
    components = value.split(".")
    if any(not part for part in components):
        return "empty component"
    if any(len(part) > 1 and part.startswith("0") for part in components):
        return "component with a leading zero"
    return ""


def _shown_uid(stored: str) -> str:
    value = stored[:-1] if stored.endswith("\x00") and len(stored) % 2 == 0 else stored
    return value.replace("\x00", "\\x00")


def _subjects(ds: Dataset, where: str) -> dict[str, str]:
    """Subject per level: the entity's UID, else ``where``."""
    return {
        "STUDY": uid_of(ds, "StudyInstanceUID") or where,
        "SERIES": uid_of(ds, "SeriesInstanceUID") or where,
        "IMAGE": uid_of(ds, "SOPInstanceUID") or where,
    }


_MISSING = {
    "StudyInstanceUID": (FindingKind.MISSING_STUDY_UID, "STUDY", True),
    "PatientID": (FindingKind.MISSING_PATIENT_ID, "STUDY", False),
    "SeriesInstanceUID": (FindingKind.MISSING_SERIES_UID, "SERIES", True),
    "Modality": (FindingKind.MISSING_MODALITY, "SERIES", False),
    "SOPInstanceUID": (FindingKind.MISSING_SOP_INSTANCE_UID, "IMAGE", True),
    "SOPClassUID": (FindingKind.MISSING_SOP_CLASS_UID, "IMAGE", False),
}


def _missing(ds: Dataset, levels: list[str], where: str, out: FindingsCollector) -> None:
    subjects = _subjects(ds, where)
    study_uid = uid_of(ds, "StudyInstanceUID")
    for keyword, (kind, level, self_naming) in _MISSING.items():
        if level not in levels or raw_text(ds, keyword).strip("\x00 "):
            continue
        if keyword == "SOPClassUID" and _file_meta_sop_class(ds):
            continue
        subject = where if self_naming else subjects[level]
        out.add(kind, subject, keyword, study_uid=study_uid)


def _file_meta_sop_class(ds: Dataset) -> str:
    meta = getattr(ds, "file_meta", None)
    return str(meta.get("MediaStorageSOPClassUID", "") or "").strip() if meta else ""


def _invalid_uids(ds: Dataset, levels: list[str], out: FindingsCollector) -> None:
    study_uid = uid_of(ds, "StudyInstanceUID")
    for level in levels:
        for keyword in _UID_KEYS[level]:
            stored = raw_text(ds, keyword)
            if stored.strip("\x00 ") and (problem := uid_problem(stored)):
                out.add(
                    FindingKind.INVALID_UID,
                    _shown_uid(stored),
                    f"{keyword}: {problem}",
                    study_uid=study_uid,
                )


def _charset_terms(ds: Dataset) -> list[str]:
    stored = raw_text(ds, "SpecificCharacterSet").strip("\x00 ")
    return [term.strip() for term in stored.split("\\")] if stored else []


def _decodes(value: bytes, terms: list[str]) -> bool:
    """Whether ``value`` is valid text in the declared character set(s)."""
    if any(term in _ISO2022 for term in terms) or len(terms) > 1:
        return _decodes_iso2022(value, terms)
    codec = DEFINED_CHARSETS.get(terms[0] if terms else "ISO_IR 6", "ascii")
    try:
        value.decode(codec)
    except (UnicodeDecodeError, LookupError):
        return False
    return True


def _decodes_iso2022(value: bytes, terms: list[str]) -> bool:
    """Code extensions: let pydicom switch on the escape sequences, and watch it."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        text = decode_bytes(value, convert_encodings(terms), set())
    return not caught and "\ufffd" not in text


def _text_elements(ds: Dataset) -> Iterator[tuple[str, bytes]]:
    for element in ds.elements():
        tag = BaseTag(element.tag)
        if tag.is_private:
            continue
        if not isinstance(element, RawDataElement) or not isinstance(element.value, bytes):
            continue
        vr = element.VR or _public_vr(tag)
        if vr in _TEXT_VRS:
            yield _keyword(tag), element.value


def _public_vr(tag: BaseTag) -> str:
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return ""


def _keyword(tag: BaseTag) -> str:
    return keyword_for_tag(tag) or str(tag)


def _charset(ds: Dataset, subject: str, out: FindingsCollector) -> None:
    terms = _charset_terms(ds)
    known = [term for term in terms if term in DEFINED_CHARSETS or term in _ISO2022 or not term]
    study_uid = uid_of(ds, "StudyInstanceUID")
    if len(known) != len(terms):
        out.add(FindingKind.UNKNOWN_CHARSET, "\\".join(terms), study_uid=study_uid)
        return  # decoding against an unknown declaration proves nothing
    bad = sorted({keyword for keyword, value in _text_elements(ds) if not _decodes(value, terms)})
    if bad:
        out.add(FindingKind.UNDECODABLE_TEXT, subject, ", ".join(bad), study_uid=study_uid)


def private_creators(ds: Dataset) -> set[str]:
    """Private creator names (gggg,0010-00FF in odd groups) of the top level."""
    creators: set[str] = set()
    for element in ds.elements():
        tag = BaseTag(element.tag)
        if tag.is_private and 0x0010 <= tag.element <= 0x00FF:
            value = element.value
            text = value.decode("latin_1") if isinstance(value, bytes) else str(value or "")
            creators.add(text.strip("\x00 ") or "(empty private creator)")
    return creators


def check_dataset(ds: Dataset, levels: Levels, out: FindingsCollector, *, where: str = "") -> None:
    """Add every finding ``ds`` shows at ``levels`` to ``out``."""
    names = levels.names()
    _missing(ds, names, where, out)
    _invalid_uids(ds, names, out)
    if levels.text:
        subject = _subjects(ds, where)["IMAGE" if levels.image else "STUDY"]
        _charset(ds, subject, out)
    if levels.private:
        study_uid = uid_of(ds, "StudyInstanceUID")
        for creator in sorted(private_creators(ds)):
            out.add(FindingKind.PRIVATE_CREATOR, creator, study_uid=study_uid)


class StudyPatients:
    """The PatientIDs each StudyInstanceUID was seen with; a second one is a finding."""

    def __init__(self, findings: FindingsCollector, detail: str) -> None:
        self.findings = findings
        self.detail = detail
        self._seen: dict[str, set[str]] = {}

    def note(self, study_uid: str, patient_id: str) -> None:
        patients = self._seen.setdefault(study_uid, set())
        patients.add(patient_id)
        if len(patients) > 1:
            self.findings.set_count(
                FindingKind.STUDY_UNDER_TWO_PATIENTS, study_uid, len(patients), self.detail
            )
