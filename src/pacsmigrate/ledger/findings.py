"""The vocabulary of findings: what inventory and assess can report about a source.

A finding is one (kind, subject) pair in the ledger's ``findings`` table, with
a ``count`` of occurrences (instances or rows) and a ``detail`` that names the
attributes involved. The subject is what a person looks up to act on it: a
UID, a file path, a private creator, a query slice, or (for the patient
identity kinds) a PatientID, which is PHI and shown only on request.

Each kind belongs to the stage that computes it; that stage replaces its
kinds wholesale when it completes, so a fixed problem disappears on the next
run and nothing is counted twice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "KINDS",
    "FindingKind",
    "FindingsCollector",
    "KindInfo",
    "Severity",
    "kinds_of_stage",
    "redact_patient_keys",
]


class Severity(StrEnum):
    ERROR = "error"  # data would be lost or wrong if migrated as is
    WARNING = "warning"  # needs a decision before migrating
    INFO = "info"  # worth knowing; plan for it


class FindingKind(StrEnum):
    # inventory: completeness of the list
    SLICE_TRUNCATED = "slice_truncated"
    DUPLICATE_ROWS = "duplicate_rows"
    ZERO_IMAGE_STUDY = "zero_image_study"
    INSTANCE_COUNT_MISMATCH = "instance_count_mismatch"
    NOT_DICOM = "not_dicom"
    UNREADABLE_FILE = "unreadable_file"
    # inventory: what each header says
    MISSING_PATIENT_ID = "missing_patient_id"
    MISSING_STUDY_UID = "missing_study_uid"
    MISSING_SERIES_UID = "missing_series_uid"
    MISSING_SOP_INSTANCE_UID = "missing_sop_instance_uid"
    MISSING_SOP_CLASS_UID = "missing_sop_class_uid"
    MISSING_MODALITY = "missing_modality"
    INVALID_UID = "invalid_uid"
    UNKNOWN_CHARSET = "unknown_charset"
    UNDECODABLE_TEXT = "undecodable_text"
    PRIVATE_CREATOR = "private_creator"
    # inventory: identity across records
    STUDY_UNDER_TWO_PATIENTS = "study_under_two_patients"
    SOP_UID_IN_TWO_PLACES = "sop_uid_in_two_places"
    # assess
    PATIENT_ID_CONFLICT = "patient_id_conflict"
    PATIENT_UNDER_SEVERAL_IDS = "patient_under_several_ids"
    TARGET_REFUSES = "target_refuses"
    PAST_RETENTION = "past_retention"


@dataclass(frozen=True)
class KindInfo:
    stage: str
    severity: Severity
    title: str
    advice: str
    subject_is_phi: bool = False
    subject_has_patient_keys: bool = False  # "PatientName=Sm*": mask the values only


_I, _A = "inventory", "assess"
_E, _W, _N = Severity.ERROR, Severity.WARNING, Severity.INFO

KINDS: dict[FindingKind, KindInfo] = {
    FindingKind.SLICE_TRUNCATED: KindInfo(
        _I,
        _E,
        "Query slice still capped after every split",
        "Studies in this slice may be missing: raise the source's C-FIND limit or"
        " query it by other keys, then run inventory again.",
        subject_has_patient_keys=True,
    ),
    FindingKind.DUPLICATE_ROWS: KindInfo(
        _I,
        _N,
        "Source repeated a study in its query answers",
        "Counted once; a source that repeats rows often has a damaged index.",
    ),
    FindingKind.ZERO_IMAGE_STUDY: KindInfo(
        _I,
        _W,
        "Study with no instances",
        "Nothing to migrate; decide whether the empty study must exist on the target.",
    ),
    FindingKind.INSTANCE_COUNT_MISMATCH: KindInfo(
        _I,
        _W,
        "Study-level instance count differs from the instances found",
        "The source's NumberOfStudyRelatedInstances is unreliable here;"
        " the migration reconciles UID sets, not counts.",
    ),
    FindingKind.NOT_DICOM: KindInfo(
        _I, _W, "File is not DICOM", "Skipped; move or wrap it if it must be kept."
    ),
    FindingKind.UNREADABLE_FILE: KindInfo(
        _I,
        _E,
        "DICOM file is truncated or cannot be parsed",
        "Cannot be migrated as is: find an intact copy (backup, modality) or accept the loss.",
    ),
    FindingKind.MISSING_PATIENT_ID: KindInfo(
        _I, _W, "PatientID is empty", "Assign the ID by a crosswalk rule before migrating."
    ),
    FindingKind.MISSING_STUDY_UID: KindInfo(
        _I, _E, "StudyInstanceUID is missing", "Cannot be placed in a study; fix at the source."
    ),
    FindingKind.MISSING_SERIES_UID: KindInfo(
        _I, _E, "SeriesInstanceUID is missing", "Cannot be placed in a series; fix at the source."
    ),
    FindingKind.MISSING_SOP_INSTANCE_UID: KindInfo(
        _I, _E, "SOPInstanceUID is missing", "Cannot be tracked or verified; fix at the source."
    ),
    FindingKind.MISSING_SOP_CLASS_UID: KindInfo(
        _I, _E, "SOPClassUID is missing", "No target can store it without its SOP class."
    ),
    FindingKind.MISSING_MODALITY: KindInfo(
        _I, _W, "Modality is empty", "Worklists and hanging protocols on the target need it."
    ),
    FindingKind.INVALID_UID: KindInfo(
        _I,
        _E,
        "UID breaks the DICOM rules (PS3.5 9.1)",
        "Strict targets refuse it: plan a UID remap rule and keep the map.",
    ),
    FindingKind.UNKNOWN_CHARSET: KindInfo(
        _I,
        _W,
        "SpecificCharacterSet is not a defined term",
        "Names may be garbled on the target: map the value to the right term by a rule.",
    ),
    FindingKind.UNDECODABLE_TEXT: KindInfo(
        _I,
        _W,
        "Text does not decode in the declared character set",
        "Declare the character set the bytes really use by a rule.",
    ),
    FindingKind.PRIVATE_CREATOR: KindInfo(
        _I,
        _N,
        "Private tags, by private creator",
        "Decide per creator: keep (the target must store them unchanged) or remove.",
    ),
    FindingKind.STUDY_UNDER_TWO_PATIENTS: KindInfo(
        _I,
        _E,
        "One StudyInstanceUID under different patients",
        "Merging them on the target would mix two patients: resolve before migrating.",
    ),
    FindingKind.SOP_UID_IN_TWO_PLACES: KindInfo(
        _I,
        _E,
        "One SOPInstanceUID in two places",
        "The target keeps one of them: compare the copies and choose.",
    ),
    FindingKind.PATIENT_ID_CONFLICT: KindInfo(
        _A,
        _W,
        "One PatientID with different names or birth dates",
        "Review the patient: a typo, a name change, or two patients on one ID.",
        subject_is_phi=True,
    ),
    FindingKind.PATIENT_UNDER_SEVERAL_IDS: KindInfo(
        _A,
        _W,
        "One name and birth date under several PatientIDs",
        "Likely one patient: merge by an MRN crosswalk rule after review.",
        subject_is_phi=True,
    ),
    FindingKind.TARGET_REFUSES: KindInfo(
        _A,
        _E,
        "SOP class or transfer syntax the target does not accept",
        "Configure the target to accept it, or plan a lossless conversion.",
    ),
    FindingKind.PAST_RETENTION: KindInfo(
        _A,
        _N,
        "Study older than the retention rule",
        "Candidate for exclusion from the migration scope.",
    ),
}


_PATIENT_KEY = re.compile(r"(Patient(?:Name|ID))=([^,]*?)\*")


def redact_patient_keys(text: str) -> str:
    """``PatientName=Smi*`` -> ``PatientName=(3 characters)*``: the shape, not the value."""
    return _PATIENT_KEY.sub(lambda m: f"{m.group(1)}=({len(m.group(2))} characters)*", text)


def kinds_of_stage(stage: str) -> list[FindingKind]:
    return [kind for kind, info in KINDS.items() if info.stage == stage]


@dataclass
class _Tally:
    count: int = 0
    details: set[str] | None = None
    study_uid: str = ""


class FindingsCollector:
    """Gathers findings in memory during a stage; one entry per (kind, subject).

    ``add`` the same (kind, subject) again to count another occurrence; details
    are merged (sorted, distinct) so the ledger row names every attribute seen.
    """

    def __init__(self) -> None:
        self._tallies: dict[tuple[FindingKind, str], _Tally] = {}

    def add(
        self,
        kind: FindingKind,
        subject: str,
        detail: str = "",
        *,
        count: int = 1,
        study_uid: str = "",
    ) -> None:
        tally = self._tallies.setdefault((kind, subject), _Tally(details=set()))
        tally.count += count
        if detail and tally.details is not None:
            tally.details.add(detail)
        tally.study_uid = tally.study_uid or study_uid

    def set_count(self, kind: FindingKind, subject: str, count: int, detail: str = "") -> None:
        """Record a finding whose count is a property (e.g. distinct IDs), not a tally."""
        self._tallies[(kind, subject)] = _Tally(count=count, details={detail} if detail else set())

    def merge(self, other: FindingsCollector) -> None:
        """Add ``other``'s findings (counts add up, details merge)."""
        for (kind, subject), tally in other._tallies.items():
            for detail in sorted(tally.details or {""}):
                self.add(kind, subject, detail, count=0, study_uid=tally.study_uid)
            self._tallies[(kind, subject)].count += tally.count

    def __len__(self) -> int:
        return len(self._tallies)

    def rows(self) -> list[tuple[FindingKind, str, int, str, str]]:
        """(kind, subject, count, detail, study_uid), sorted for stable output."""
        return [
            (kind, subject, tally.count, "; ".join(sorted(tally.details or ())), tally.study_uid)
            for (kind, subject), tally in sorted(self._tallies.items())
        ]

    def count(self, kind: FindingKind) -> int:
        return sum(1 for key in self._tallies if key[0] == kind)
