"""Study-level queries that cannot be silently truncated (FIELD-NOTES 1 and 2).

Many PACS cap a C-FIND (or QIDO) answer at some row count and still report
success. So a study query answers for a *slice* (StudyDate range, modality,
patient-name prefix), and a slice whose answer reaches the configured cap, or
a suspiciously round count, is split until every slice is below it:

1. no date: the dated range [earliest, today + 1 year] plus the two open
   ends, and a *sweep* of the same slice without a date, because a date query
   never matches a study whose StudyDate is empty;
2. a date range: bisection down to single days;
3. a single day, an open date range, or the sweep: by ModalitiesInStudy;
4. then by PatientName prefix (one, two, then three characters);
5. then by PatientID prefix (up to eight characters), which separates almost
   any crowd, including the undated studies the sweep looks for.

A split is kept only if its children together return every row the capped
parent returned; otherwise the next way of splitting is tried. A slice that is
still capped when nothing is left to split becomes a ``slice_truncated``
finding: its studies may be incomplete, and the report says so.
"""

from __future__ import annotations

import logging
import string
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import date, timedelta

from pydicom.dataset import Dataset

from pacsmigrate.endpoints.base import TruncatedAnswer
from pacsmigrate.inventory.checks import StudyPatients, text_of, uid_of
from pacsmigrate.ledger.findings import FindingKind, FindingsCollector, redact_patient_keys

__all__ = ["Ask", "Slice", "SliceCrawler", "answer", "is_suspicious_count", "study_query"]

LOGGER = logging.getLogger(__name__)
Find = Callable[[Dataset], Iterator[Dataset]]
#: One query's answer: its rows, and whether the peer said it cut them short.
Ask = Callable[[Dataset], tuple[list[Dataset], bool]]


def answer(find: Find, query: Dataset) -> tuple[list[Dataset], bool]:
    """Every row ``find`` yields for ``query``, and whether the peer truncated them."""
    rows: list[Dataset] = []
    try:
        for row in find(query):
            rows.append(row)
    except TruncatedAnswer:
        return rows, True
    return rows, False


#: Modalities tried when a slice is split by ModalitiesInStudy; values seen in
#: the capped answer are added (DICOM PS3.16 CID 29/33 and common legacy values).
_MODALITY_TERMS = (
    "CT MR CR DX US NM PT XA RF MG OT SR SC DOC KO PR SEG REG RTSTRUCT RTPLAN "
    "RTDOSE RTIMAGE RTRECORD ES IO PX XC OP OPT OPM OPV SM ECG HD AU BI BMD DG "
    "GM IVUS LS RG TG EPS HC OCT OSS PLAN RESP BDUS ASMT AR CD DS DF DM EC FA "
    "FS LP MA MS OPR ST VF XAPX"
)
MODALITIES = tuple(_MODALITY_TERMS.split())
_FIRST_CHARS = string.ascii_uppercase + string.digits
_NEXT_CHARS = string.ascii_uppercase + string.ascii_lowercase + string.digits
_MAX_NAME_PREFIX = 3
_MAX_ID_PREFIX = 8
_ROUND_POWERS = {256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536}


def is_suspicious_count(rows: int, cap: int) -> bool:
    """True when an answer of ``rows`` rows may have been cut short."""
    if cap and rows >= cap:
        return True
    return rows >= 100 and (rows % 100 == 0 or rows in _ROUND_POWERS)


def _day(value: date) -> str:
    return value.strftime("%Y%m%d")


def _parse_day(value: str) -> date:
    return date(int(value[:4]), int(value[4:6]), int(value[6:8]))


@dataclass(frozen=True)
class Slice:
    """One study-level query: empty fields mean universal matching."""

    date_from: str = ""  # YYYYMMDD
    date_to: str = ""
    modality: str = ""
    name_prefix: str = ""
    id_prefix: str = ""
    sweep: bool = False  # dates are done: split by other keys only

    @property
    def study_date(self) -> str:
        if not (self.date_from or self.date_to):
            return ""
        if self.date_from == self.date_to:
            return self.date_from
        return f"{self.date_from}-{self.date_to}"

    @property
    def closed_range(self) -> bool:
        return bool(self.date_from and self.date_to)

    def describe(self) -> str:
        parts = [f"StudyDate={self.study_date}"] if self.study_date else []
        if self.sweep:
            parts.append("StudyDate any, including empty")
        if self.modality:
            parts.append(f"ModalitiesInStudy={self.modality}")
        if self.name_prefix:
            parts.append(f"PatientName={self.name_prefix}*")
        if self.id_prefix:
            parts.append(f"PatientID={self.id_prefix}*")
        return ", ".join(parts) or "all studies"


def study_query(keys: dict[str, str], piece: Slice) -> Dataset:
    """The C-FIND identifier for ``piece`` asking for ``keys`` (DICOM keywords)."""
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.StudyInstanceUID = ""
    for keyword in keys:
        setattr(ds, keyword, "")
    ds.NumberOfStudyRelatedInstances = ""
    ds.StudyDate = piece.study_date
    ds.ModalitiesInStudy = piece.modality
    ds.PatientName = f"{piece.name_prefix}*" if piece.name_prefix else ""
    ds.PatientID = f"{piece.id_prefix}*" if piece.id_prefix else ""
    return ds


class SliceCrawler:
    """Runs study queries slice by slice; hands every study to ``on_study`` once."""

    def __init__(
        self,
        ask: Ask,
        keys: dict[str, str],
        on_study: Callable[[Dataset], None],
        findings: FindingsCollector,
        *,
        cap: int = 0,
        earliest: date = date(1900, 1, 1),
        today: date | None = None,
    ) -> None:
        self.ask = ask
        self.keys = keys
        self.on_study = on_study
        self.findings = findings
        self.cap = cap
        self.earliest = earliest
        self.latest = (today or date.today()) + timedelta(days=366)
        self.queries = 0
        self.splits = 0
        self.seen: set[str] = set()
        self._patients = StudyPatients(
            findings, "the source answers this study with different PatientIDs"
        )

    def run(self) -> set[str]:
        """Crawl every slice; returns the StudyInstanceUIDs found."""
        self._crawl(Slice())
        return self.seen

    # -- one slice ---------------------------------------------------------

    def _crawl(
        self, piece: Slice, rows: list[Dataset] | None = None, truncated: bool = False
    ) -> set[str]:
        if rows is None:
            self.queries += 1
            rows, truncated = self.ask(study_query(self.keys, piece))
        uids = self._take(rows)
        if not truncated and not is_suspicious_count(len(rows), self.cap):
            return uids
        self.splits += 1
        LOGGER.info(
            "query slice %s answered %d rows: splitting",
            redact_patient_keys(piece.describe()),
            len(rows),
        )
        for children, reuse in self._partitions(piece, rows):
            found = set()
            for child in children:
                reused = child == reuse
                found |= self._crawl(child, rows if reused else None, truncated and reused)
            if uids <= found:
                return uids | found
            uids |= found
        self.findings.add(
            FindingKind.SLICE_TRUNCATED,
            piece.describe(),
            f"{len(rows)} rows, {'cut short by the source' if truncated else 'a cap'};"
            " no further split covers them",
        )
        LOGGER.warning(
            "query slice %s may be truncated at %d rows",
            redact_patient_keys(piece.describe()),
            len(rows),
        )
        return uids

    def _take(self, rows: list[Dataset]) -> set[str]:
        """Deduplicate one answer; new studies go to ``on_study``."""
        per_uid = Counter(uid_of(row, "StudyInstanceUID") for row in rows)
        uids = {uid for uid in per_uid if uid}
        for uid, count in per_uid.items():
            if uid and count > 1:
                self.findings.add(FindingKind.DUPLICATE_ROWS, uid, count=count - 1, study_uid=uid)
        for row in rows:
            uid = uid_of(row, "StudyInstanceUID")
            if not uid:
                self.findings.add(FindingKind.MISSING_STUDY_UID, "study-level query answer")
                continue
            self._patients.note(uid, text_of(row, "PatientID"))
            if uid not in self.seen:
                self.seen.add(uid)
                self.on_study(row)
        return uids

    # -- ways to split -----------------------------------------------------

    def _partitions(
        self, piece: Slice, rows: list[Dataset]
    ) -> Iterator[tuple[list[Slice], Slice | None]]:
        """Alternative splits of ``piece``, best first; each a list of children.

        The second item is a child whose query equals ``piece``'s, which can reuse
        the rows already received instead of asking again.
        """
        if not piece.study_date and not piece.sweep:
            sweep = replace(piece, sweep=True)
            yield [*self._date_ranges(piece), sweep], sweep
            return
        if piece.closed_range and piece.date_from != piece.date_to:
            yield self._bisect(piece), None
            return
        if not (piece.modality or piece.name_prefix or piece.id_prefix):
            yield self._by_modality(piece, rows), None
        if len(piece.name_prefix) < _MAX_NAME_PREFIX and not piece.id_prefix:
            yield self._by_prefix(piece, rows, "PatientName", "name_prefix"), None
        if len(piece.id_prefix) < _MAX_ID_PREFIX:
            yield self._by_prefix(piece, rows, "PatientID", "id_prefix"), None

    def _date_ranges(self, piece: Slice) -> list[Slice]:
        first, last = _day(self.earliest), _day(self.latest)
        before = _day(self.earliest - timedelta(days=1))
        after = _day(self.latest + timedelta(days=1))
        return [
            replace(piece, date_to=before),
            replace(piece, date_from=first, date_to=last),
            replace(piece, date_from=after),
        ]

    @staticmethod
    def _bisect(piece: Slice) -> list[Slice]:
        start, end = _parse_day(piece.date_from), _parse_day(piece.date_to)
        middle = start + (end - start) // 2
        return [
            replace(piece, date_to=_day(middle)),
            replace(piece, date_from=_day(middle + timedelta(days=1))),
        ]

    @staticmethod
    def _by_modality(piece: Slice, rows: list[Dataset]) -> list[Slice]:
        seen = {
            value
            for row in rows
            for value in text_of(row, "ModalitiesInStudy").split("\\")
            if value.strip()
        }
        values = list(MODALITIES) + sorted(seen - set(MODALITIES))
        return [replace(piece, modality=value) for value in values]

    @staticmethod
    def _by_prefix(piece: Slice, rows: list[Dataset], keyword: str, field: str) -> list[Slice]:
        """Children one character longer: letters and digits, and every character
        seen at that place in the capped answer (accents, '^', '-', spaces...)."""
        prefix: str = getattr(piece, field)
        depth = len(prefix)
        seen = {
            value[depth]
            for row in rows
            if (value := text_of(row, keyword)).startswith(prefix)
            and len(value) > depth
            and value[depth] not in "*?\\"
        }
        base = _NEXT_CHARS if depth else _FIRST_CHARS
        chars = list(base) + sorted(seen - set(base))
        children: list[Slice] = []
        for char in chars:
            if field == "name_prefix":
                children.append(replace(piece, name_prefix=prefix + char))
            else:
                children.append(replace(piece, id_prefix=prefix + char))
        return children
