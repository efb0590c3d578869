"""``pacsmigrate assess``: findings across the whole inventory, and the catalogue.

Inventory already recorded what each header and each query answer showed
(findings of stage "inventory"). Assess adds what needs every record at once:
patient identity conflicts, the retention rule, and what the target will not
accept (probed by association negotiation). It then reads the ledger into an
``Assessment`` for the HTML, CSV and JSON catalogue.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Protocol

from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pacsmigrate.assess.model import Assessment, FindingGroup, LargeStudy
from pacsmigrate.ledger import repo
from pacsmigrate.ledger.findings import KINDS, FindingKind, FindingsCollector
from pacsmigrate.ledger.models import Instance, Run, Series, Study

__all__ = ["AssessOptions", "Prober", "run_assess"]

LOGGER = logging.getLogger(__name__)
_SECONDARY = {"SR", "KO", "PR", "DOC", "REG", "SEG"}  # not what a study "is"
_LARGEST = 20


class Prober(Protocol):
    """A target that can say which (SOP class, transfer syntax) pairs it accepts."""

    @property
    def label(self) -> str: ...

    def probe(self, pairs: list[tuple[str, str]]) -> set[tuple[str, str]]: ...


@dataclass
class AssessOptions:
    source_label: str
    target: Prober | None = None
    retention_years: int = 0
    throughput: float = 0.0  # instances/s; 0 = measured in the last migrate run
    today: date | None = None
    show_phi: bool = False


def run_assess(session: Session, options: AssessOptions) -> Assessment:
    """Compute the assess findings (replacing the last ones) and the catalogue."""
    run = repo.start_run(session, "assess")
    session.commit()
    today = options.today or date.today()
    findings = FindingsCollector()
    notes = _patient_identity(session, findings)
    notes += _retention(session, findings, options.retention_years, today)
    notes += _target_support(session, findings, options.target)
    repo.replace_findings(session, "assess", findings)
    assessment = _catalogue(session, options, notes)
    summary = {group.kind: group.count for group in assessment.findings}
    repo.audit(session, "assess", "completed", findings=summary)
    repo.finish_run(session, run, "completed", summary)
    session.commit()
    return assessment


# -- patient identity --------------------------------------------------------


def _name_key(name: str) -> str:
    """Names compared as a person would: case and trailing empty components ignored."""
    return name.strip().rstrip("^= ").upper()


def _patient_identity(session: Session, findings: FindingsCollector) -> list[str]:
    by_id: dict[str, set[tuple[str, str]]] = defaultdict(set)
    by_person: dict[tuple[str, str], set[str]] = defaultdict(set)
    shown: dict[tuple[str, str], str] = {}
    rows = session.execute(
        select(Study.patient_id, Study.patient_name, Study.patient_birth_date)
    ).all()
    for patient_id, name, birth_date in rows:
        if patient_id:
            by_id[patient_id].add((_name_key(name), birth_date))
        if _name_key(name) and birth_date:
            person = (_name_key(name), birth_date)
            by_person[person].add(patient_id)
            shown.setdefault(person, f"{name}|{birth_date}")
    for patient_id, people in sorted(by_id.items()):
        names = {name for name, _ in people if name}
        births = {birth for _, birth in people if birth}
        if len(names) > 1 or len(births) > 1:
            findings.set_count(
                FindingKind.PATIENT_ID_CONFLICT,
                patient_id,
                len(people),
                f"{len(names)} names, {len(births)} birth dates",
            )
    for person, ids in sorted(by_person.items()):
        known = {pid for pid in ids if pid}
        if len(known) > 1:
            findings.set_count(FindingKind.PATIENT_UNDER_SEVERAL_IDS, shown[person], len(known))
    return []


# -- retention ---------------------------------------------------------------


def _years_before(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February
        return day.replace(year=day.year - years, day=28)


def _retention(session: Session, findings: FindingsCollector, years: int, today: date) -> list[str]:
    if years <= 0:
        return ["No retention rule set (assess.retention_years = 0)."]
    cutoff = _years_before(today, years).strftime("%Y%m%d")
    query = select(Study.study_uid, Study.study_date).where(
        Study.study_date != "", Study.study_date < cutoff
    )
    for study_uid, study_date in session.execute(query):
        findings.add(FindingKind.PAST_RETENTION, study_uid, study_date, study_uid=study_uid)
    return [f"Retention rule: studies dated before {cutoff} ({years} years)."]


# -- what the target accepts -------------------------------------------------


def _uid_name(uid: str) -> str:
    name = UID(uid).name
    return f"{uid} ({name})" if name and name != uid else uid


def _target_support(
    session: Session, findings: FindingsCollector, target: Prober | None
) -> list[str]:
    counts = session.execute(
        select(Instance.sop_class_uid, Instance.transfer_syntax_uid, func.count(Instance.id))
        .where(Instance.sop_class_uid != "")
        .group_by(Instance.sop_class_uid, Instance.transfer_syntax_uid)
    ).all()
    if target is None:
        return ["Target not probed: no target.url is set."]
    if not counts:
        return []
    asked = {pair for sop, ts, _ in counts for pair in _offers(sop, ts)}
    accepted = target.probe(sorted(asked))
    for sop, ts, count in counts:
        if not accepted & set(_offers(sop, ts)):
            subject = _uid_name(sop) + (f" in {_uid_name(ts)}" if ts else "")
            findings.add(FindingKind.TARGET_REFUSES, subject, count=int(count))
    return [f"Target {target.label} probed for {len(asked)} SOP class / transfer syntax pairs."]


def _offers(sop_class: str, syntax: str) -> list[tuple[str, str]]:
    """What to ask for: the stored syntax, else (unknown) the two uncompressed ones."""
    if syntax:
        return [(sop_class, syntax)]
    return [(sop_class, ImplicitVRLittleEndian), (sop_class, ExplicitVRLittleEndian)]


# -- the catalogue -----------------------------------------------------------


def _year(study_date: str) -> str:
    year = study_date[:4]
    return year if len(study_date) >= 8 and year.isdigit() and year > "1800" else "unknown"


def _primary_modality(modalities: str) -> str:
    values = [value for value in modalities.replace("/", "\\").split("\\") if value.strip()]
    primary = [value for value in values if value not in _SECONDARY]
    return (primary or values or ["unknown"])[0]


@dataclass
class _StudyFacts:
    uid: str
    study_date: str
    modalities: str
    instances: int
    sized: int
    size: int

    @property
    def known_size(self) -> int | None:
        return self.size if self.instances and self.sized == self.instances else None


def _study_facts(session: Session) -> Iterator[_StudyFacts]:
    per_study = (
        select(
            Instance.study_id,
            func.count(Instance.id).label("instances"),
            func.count(Instance.size).label("sized"),
            func.coalesce(func.sum(Instance.size), 0).label("size"),
        )
        .group_by(Instance.study_id)
        .subquery()
    )
    series_modalities = (
        select(Series.study_id, func.min(Series.modality).label("modality"))
        .where(Series.modality != "")
        .group_by(Series.study_id)
        .subquery()
    )
    query = (
        select(
            Study.study_uid,
            Study.study_date,
            Study.modalities,
            series_modalities.c.modality,
            per_study.c.instances,
            per_study.c.sized,
            per_study.c.size,
        )
        .outerjoin(per_study, per_study.c.study_id == Study.id)
        .outerjoin(series_modalities, series_modalities.c.study_id == Study.id)
        .order_by(Study.id)
    )
    for uid, study_date, modalities, series_modality, instances, sized, size in session.execute(
        query
    ):
        yield _StudyFacts(
            uid,
            study_date,
            modalities or series_modality or "",
            int(instances or 0),
            int(sized or 0),
            int(size or 0),
        )


def _catalogue(session: Session, options: AssessOptions, notes: list[str]) -> Assessment:
    per_year: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    bytes_per_year: dict[str, int] = defaultdict(int)
    facts = list(_study_facts(session))
    for study in facts:
        year = _year(study.study_date)
        per_year[year][_primary_modality(study.modalities)] += 1
        if study.known_size is not None:
            bytes_per_year[year] += study.known_size
    sizes = [s.known_size for s in facts if s.known_size is not None]
    return Assessment(
        source=options.source_label,
        generated_at=datetime.now(UTC).isoformat(timespec="seconds"),
        studies=len(facts),
        series=int(session.scalar(select(func.count(Series.id))) or 0),
        instances=sum(s.instances for s in facts),
        size=sum(sizes) if sizes else None,
        sized_studies=len(sizes),
        studies_per_year={year: dict(mods) for year, mods in sorted(per_year.items())},
        bytes_per_year=dict(sorted(bytes_per_year.items())),
        study_sizes=sorted(sizes),
        study_instance_counts=sorted(s.instances for s in facts),
        largest=_largest(facts),
        findings=_finding_groups(session),
        estimate=_estimate(session, options.throughput, sum(s.instances for s in facts)),
        show_phi=options.show_phi,
        notes=notes,
    )


def _largest(facts: list[_StudyFacts]) -> list[LargeStudy]:
    def key(study: _StudyFacts) -> tuple[int, int]:
        return (study.known_size or 0, study.instances)

    return [
        LargeStudy(s.uid, s.study_date, s.modalities, s.instances, s.known_size)
        for s in sorted(facts, key=key, reverse=True)[:_LARGEST]
    ]


def _finding_groups(session: Session) -> list[FindingGroup]:
    groups: dict[str, FindingGroup] = {}
    for row in repo.findings_of(session):
        info = KINDS[FindingKind(row.kind)]
        group = groups.setdefault(
            row.kind, FindingGroup(row.kind, row.severity, info.title, info.advice)
        )
        group.subjects.append((row.subject, row.count, row.detail))
    order = {"error": 0, "warning": 1, "info": 2}
    return sorted(groups.values(), key=lambda g: (order.get(g.severity, 3), g.kind))


def _measured_rate(session: Session) -> tuple[float, str] | None:
    """Instances stored per second by the last completed migrate run."""
    run = session.scalars(
        select(Run)
        .where(Run.stage == "migrate", Run.finished_at.is_not(None), Run.outcome == "completed")
        .order_by(Run.id.desc())
        .limit(1)
    ).first()
    if run is None or run.finished_at is None:
        return None
    stored = session.scalar(
        select(func.count(Instance.id)).where(
            Instance.stored_at >= run.started_at, Instance.stored_at <= run.finished_at
        )
    )
    seconds = (run.finished_at - run.started_at).total_seconds()
    if not stored or seconds <= 0:
        return None
    return stored / seconds, f"measured: migrate run {run.id} stored {stored} in {seconds:.0f} s"


def _estimate(session: Session, throughput: float, instances: int) -> dict[str, Any]:
    if throughput > 0:
        rate, basis = throughput, "given (assess.throughput or --throughput)"
    elif measured := _measured_rate(session):
        rate, basis = measured
    else:
        return {
            "basis": "unknown",
            "hint": "no throughput known yet: migrate a test wave, or pass --throughput"
            " (instances per second) to estimate the duration",
        }
    return {
        "throughput": round(rate, 3),
        "unit": "instances/s",
        "basis": basis,
        "instances": instances,
        "seconds": round(instances / rate, 1),
    }
