"""Reconciliation report: what the ledger says about the migration.

``build_report`` reads the ledger into one JSON-serialisable dict (stable key
order); ``write_reports`` writes it as ``report.json`` (for machines) and a
self-contained ``report.html`` (for people); ``summary_table`` renders the
counts for the terminal. Patient identity (ID, name) is left out unless
``show_phi`` is set; reasons and store errors are quoted as the stages wrote them.
"""

from __future__ import annotations

import html
import json
import logging
import os
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

from rich.table import Table
from sqlalchemy import ColumnElement, and_, case, func, or_, select
from sqlalchemy.orm import Session

from pacsmigrate._html import base_css
from pacsmigrate.endpoints.status import describe
from pacsmigrate.ledger.models import Instance, Run, Series, Study
from pacsmigrate.ledger.states import InstanceVerify, StudyState

__all__ = [
    "FAILURE_STATES",
    "RUNS_SHOWN",
    "build_report",
    "render_html",
    "summary_table",
    "write_reports",
]

logger = logging.getLogger(__name__)

FAILURE_STATES = (StudyState.FAILED, StudyState.QUARANTINED, StudyState.EXCLUDED)
RUNS_SHOWN = 20
NO_MODALITY = "(none)"
_HTML_INSTANCES_PER_STUDY = 50

# C-STORE outcome that leaves the instance on the target: success, 0x0001, 0xBxxx.
_STORED: ColumnElement[bool] = or_(
    Instance.store_status.in_((0x0000, 0x0001)),
    Instance.store_status.between(0xB000, 0xBFFF),
)
_REFUSED: ColumnElement[bool] = and_(Instance.store_status.is_not(None), ~_STORED)
_MISSING: ColumnElement[bool] = Instance.verify_state == InstanceVerify.MISSING.value
_HAS_ERROR: ColumnElement[bool] = Instance.store_error != ""


# ---------------------------------------------------------------- building


def build_report(session: Session, *, show_phi: bool = False) -> dict[str, Any]:
    """Read the ledger into the report dict (see the module docstring)."""
    return {
        "generated_at": _iso(datetime.now(UTC)),
        "show_phi": show_phi,
        "totals": _totals(session),
        "studies_by_state": _studies_by_state(session),
        "by_modality": _by_modality(session),
        "failures": _failures(session, show_phi=show_phi),
        "runs": _runs(session),
    }


def _iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC; SQLite hands back naive datetimes, which are UTC."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="seconds")


def _count_if(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def _totals(session: Session) -> dict[str, int]:
    studies = session.scalar(select(func.count(Study.id))) or 0
    series = session.scalar(select(func.count(Series.id))) or 0
    row = session.execute(
        select(
            func.count(Instance.id),
            func.sum(Instance.size),
            _count_if(_STORED),
            _count_if(_REFUSED),
            _count_if(Instance.verify_state == InstanceVerify.PRESENT.value),
            _count_if(_MISSING),
        )
    ).one()
    return {
        "studies": int(studies),
        "series": int(series),
        "instances": int(row[0]),
        "bytes_received": int(row[1] or 0),
        "instances_stored": int(row[2]),
        "instances_refused": int(row[3]),
        "instances_verified": int(row[4]),
        "instances_missing": int(row[5]),
    }


def _empty_states() -> dict[str, int]:
    return {state.value: 0 for state in StudyState}


def _studies_by_state(session: Session) -> dict[str, int]:
    counts = _empty_states()
    rows = session.execute(select(Study.state, func.count(Study.id)).group_by(Study.state))
    for state, count in rows:
        counts[state] = counts.get(state, 0) + int(count)
    return counts


def _modality_key() -> ColumnElement[str]:
    return func.coalesce(func.nullif(func.trim(Series.modality), ""), NO_MODALITY)


def _by_modality(session: Session) -> dict[str, dict[str, Any]]:
    modality = _modality_key().label("modality")
    study_rows = session.execute(
        select(modality, Study.state, func.count(func.distinct(Study.id)))
        .join(Study, Series.study_id == Study.id)
        .group_by(modality, Study.state)
    )
    series_rows = session.execute(select(modality, func.count(Series.id)).group_by(modality))
    instance_rows = session.execute(
        select(modality, func.count(Instance.id))
        .join(Instance, Instance.series_id == Series.id)
        .group_by(modality)
    )
    result: dict[str, dict[str, Any]] = {
        name: {"studies": 0, "series": int(count), "instances": 0, "states": _empty_states()}
        for name, count in series_rows
    }
    for name, count in instance_rows:
        result[name]["instances"] = int(count)
    for name, state, count in study_rows:
        result[name]["studies"] += int(count)
        states = result[name]["states"]
        states[state] = states.get(state, 0) + int(count)
    return {name: result[name] for name in sorted(result)}


def _failures(session: Session, *, show_phi: bool) -> list[dict[str, Any]]:
    failure_values = [state.value for state in FAILURE_STATES]
    ranks = {value: index for index, value in enumerate(failure_values)}
    rank = case(ranks, value=Study.state, else_=len(ranks))
    in_failure = Study.state.in_(failure_values)
    errored = select(Instance.study_id).where(_HAS_ERROR)
    query = (
        select(Study).where(or_(in_failure, Study.id.in_(errored))).order_by(rank, Study.study_uid)
    )
    entries = []
    for study in session.scalars(query):
        failing = study.state in failure_values
        entries.append(_failure_entry(session, study, failing=failing, show_phi=show_phi))
    return entries


def _failure_entry(
    session: Session, study: Study, *, failing: bool, show_phi: bool
) -> dict[str, Any]:
    phi = {"patient_id": study.patient_id, "patient_name": study.patient_name}
    return {
        "study_uid": study.study_uid,
        **(phi if show_phi else {}),
        "state": study.state,
        "reason": study.reason,
        "error_class": study.error_class,
        "attempts": study.attempts,
        "instance_counts": _instance_counts(session, study),
        "instances": _failed_instances(session, study, failing=failing),
    }


def _instance_counts(session: Session, study: Study) -> dict[str, int | None]:
    row = session.execute(
        select(func.count(Instance.id), _count_if(_STORED), _count_if(_REFUSED)).where(
            Instance.study_id == study.id
        )
    ).one()
    return {
        "expected": int(row[0]),
        "reported": study.reported_instances,
        "stored": int(row[1]),
        "refused": int(row[2]),
    }


def _failed_instances(session: Session, study: Study, *, failing: bool) -> list[dict[str, Any]]:
    """Instances that failed: any failure for a failing study, else a store error."""
    condition = or_(_HAS_ERROR, _REFUSED, _MISSING) if failing else _HAS_ERROR
    query = (
        select(Instance)
        .where(Instance.study_id == study.id, condition)
        .order_by(Instance.sop_instance_uid)
    )
    return [_instance_entry(instance) for instance in session.scalars(query)]


def _instance_entry(instance: Instance) -> dict[str, Any]:
    status = instance.store_status
    return {
        "sop_instance_uid": instance.sop_instance_uid,
        "sop_class_uid": instance.sop_class_uid,
        "transfer_syntax_uid": instance.transfer_syntax_uid,
        "store_status": None if status is None else f"0x{status:04X}",
        "store_error": instance.store_error,
        "verify_state": instance.verify_state,
    }


def _runs(session: Session) -> list[dict[str, Any]]:
    query = select(Run).order_by(Run.started_at.desc(), Run.id.desc()).limit(RUNS_SHOWN)
    return [_run_entry(run) for run in session.scalars(query)]


def _run_entry(run: Run) -> dict[str, Any]:
    return {
        "id": run.id,
        "stage": run.stage,
        "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at),
        "outcome": run.outcome,
        "summary": _parse_summary(run.summary),
    }


def _parse_summary(text: str) -> Any:
    """The run's JSON summary; text that is not JSON is kept as it is."""
    try:
        return json.loads(text) if text else {}
    except ValueError:
        return text


# ---------------------------------------------------------------- writing


def write_reports(report: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.html`` into ``out_dir`` (created)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "report.json"
    html_path = out_dir / "report.html"
    _write_atomic(json_path, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    _write_atomic(html_path, render_html(report))
    logger.info("report written to %s and %s", json_path, html_path)
    return json_path, html_path


def _write_atomic(path: Path, text: str) -> None:
    """Write beside the target, then rename: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


# ---------------------------------------------------------------- HTML


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _row(cells: list[str], *, tag: str = "td") -> str:
    return "<tr>" + "".join(f"<{tag}>{cell}</{tag}>" for cell in cells) + "</tr>"


def _table(headers: list[str], rows: list[str], *, empty: str) -> str:
    if not rows:
        return f'<p class="empty">{_e(empty)}</p>'
    head = _row([_e(h) for h in headers], tag="th")
    return f"<table><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>"


def _human_bytes(count: int) -> str:
    size, unit = float(count), "B"
    for bigger in ("KiB", "MiB", "GiB", "TiB"):
        if size < 1024:
            break
        size, unit = size / 1024, bigger
    return f"{count} B" if unit == "B" else f"{size:.1f} {unit}"


def _total_items(totals: dict[str, int]) -> list[tuple[str, str]]:
    """(label, shown value) for each total; bytes in binary units."""
    return [
        (key.replace("_", " "), _human_bytes(value) if key == "bytes_received" else f"{value:,}")
        for key, value in totals.items()
    ]


def _totals_html(totals: dict[str, int]) -> str:
    items = [
        f'<div class="tile"><b>{_e(shown)}</b><span>{_e(label)}</span></div>'
        for label, shown in _total_items(totals)
    ]
    return f'<div class="tiles">{"".join(items)}</div>'


def _states_html(by_state: dict[str, int]) -> str:
    total = sum(by_state.values())
    rows = []
    for state, count in by_state.items():
        pct = 100.0 * count / total if total else 0.0
        fill = f'<div class="fill s-{_e(state)}" style="width:{pct:.1f}%"></div>'
        bar = f'<div class="bar">{fill}</div>'
        rows.append(_row([_e(state), f"{count:,}", f"{pct:.1f}%", bar]))
    return _table(["state", "studies", "share", ""], rows, empty="No studies.")


def _modality_html(by_modality: dict[str, dict[str, Any]]) -> str:
    states = [state.value for state in StudyState]
    rows = []
    for name, entry in by_modality.items():
        counts = [f"{entry['states'].get(s, 0):,}" for s in states]
        numbers = [f"{entry[k]:,}" for k in ("studies", "series", "instances")]
        rows.append(_row([_e(name), *numbers, *counts]))
    headers = ["modality", "studies", "series", "instances", *states]
    return _table(headers, rows, empty="No series in the ledger.")


def _status_html(status: str | None) -> str:
    return "" if status is None else _e(describe(int(status, 16)))


def _instances_html(instances: list[dict[str, Any]]) -> str:
    shown = instances[:_HTML_INSTANCES_PER_STUDY]
    keys = ("sop_instance_uid", "sop_class_uid", "transfer_syntax_uid")
    rows = [
        _row(
            [_e(i[k]) for k in keys]
            + [_status_html(i["store_status"]), _e(i["store_error"]), _e(i["verify_state"])]
        )
        for i in shown
    ]
    headers = ["SOP instance", "SOP class", "transfer syntax", "status", "error", "verify"]
    more = len(instances) - len(shown)
    note = f'<p class="empty">and {more:,} more (see report.json)</p>' if more > 0 else ""
    return _table(headers, rows, empty="No failed instances.") + note


def _failure_html(entry: dict[str, Any]) -> str:
    counts = entry["instance_counts"]
    who = ""
    if "patient_id" in entry:
        who = f" &middot; patient {_e(entry['patient_id'])} {_e(entry['patient_name'])}"
    facts = (
        f"{_e(entry['error_class']) or 'no error class'} &middot; "
        f"{_e(entry['attempts'])} attempt(s) &middot; expected {_e(counts['expected'])}, "
        f"stored {_e(counts['stored'])}, refused {_e(counts['refused'])}{who}"
    )
    return (
        f'<div class="failure"><h3><span class="tag s-{_e(entry["state"])}">'
        f"{_e(entry['state'])}</span> <code>{_e(entry['study_uid'])}</code></h3>"
        f'<p class="reason">{_e(entry["reason"]) or "(no reason recorded)"}</p>'
        f'<p class="facts">{facts}</p>{_instances_html(entry["instances"])}</div>'
    )


def _failures_html(failures: list[dict[str, Any]]) -> str:
    if not failures:
        return '<p class="empty">No failures.</p>'
    return "".join(_failure_html(entry) for entry in failures)


def _runs_html(runs: list[dict[str, Any]]) -> str:
    keys = ("id", "stage", "started_at", "finished_at", "outcome")
    rows = [
        _row(
            [_e(run[k]) for k in keys]
            + [f"<code>{_e(json.dumps(run['summary'], ensure_ascii=False))}</code>"]
        )
        for run in runs
    ]
    headers = ["run", "stage", "started", "finished", "outcome", "summary"]
    return _table(headers, rows, empty="No runs recorded.")


def _template() -> Template:
    text = resources.files(__package__ or "pacsmigrate.report").joinpath("template.html")
    return Template(text.read_text(encoding="utf-8"))


def render_html(report: dict[str, Any]) -> str:
    """The report as one self-contained HTML page (inline CSS, no scripts)."""
    phi = "shown" if report["show_phi"] else "omitted"
    return _template().substitute(
        base_css=base_css(),
        generated_at=_e(report["generated_at"]),
        phi=_e(phi),
        totals=_totals_html(report["totals"]),
        states=_states_html(report["studies_by_state"]),
        modalities=_modality_html(report["by_modality"]),
        failure_count=_e(len(report["failures"])),
        failures=_failures_html(report["failures"]),
        runs=_runs_html(report["runs"]),
    )


# ---------------------------------------------------------------- terminal


def summary_table(report: dict[str, Any]) -> Table:
    """Studies per state, then the totals, as a rich table."""
    table = Table(title="pacsmigrate report", title_justify="left")
    table.add_column("state / total")
    table.add_column("count", justify="right")
    for state, count in report["studies_by_state"].items():
        table.add_row(state, f"{count:,}")
    table.add_section()
    for label, shown in _total_items(report["totals"]):
        table.add_row(label, shown)
    return table
