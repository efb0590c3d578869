"""Assessment report: the catalogue and data-quality findings a migration team plans from.

``render_html`` renders an :class:`Assessment` as one self-contained HTML page
(inline CSS and SVG plots; no scripts, fonts or links, as hospital networks
are often offline); ``write_assessment`` writes it with ``assessment.json``,
``findings.csv`` and ``catalogue.csv``, each atomically; ``findings_table``
renders the findings summary for the terminal.

Findings are listed error, then warning, then info (most occurrences first
within a severity). Unless ``assessment.show_phi`` is set, the subjects of
kinds whose ``KINDS[kind].subject_is_phi`` is set (PatientIDs) become keyed
placeholders, ``patient #1``, ``patient #2``..., the same value getting the
same key in every file written from one assessment, and their details, which
may quote names or birth dates, become ``(hidden)``.

``catalogue.csv`` has one row per (year, modality) with its studies; bytes are
known per year only, so they stand on the year's extra ``(all)`` row, whose
studies are the sum of the year's modality rows.
"""

from __future__ import annotations

import csv
import html
import io
import json
import logging
import os
from dataclasses import replace
from pathlib import Path
from string import Template
from typing import Any

from rich.table import Table
from rich.text import Text

from pacsmigrate._html import base_css
from pacsmigrate.assess import plots
from pacsmigrate.assess.model import Assessment, FindingGroup
from pacsmigrate.ledger.findings import KINDS, FindingKind, redact_patient_keys

__all__ = [
    "ALL_MODALITIES",
    "HIDDEN_DETAIL",
    "SEVERITY_ORDER",
    "SUBJECTS_SHOWN",
    "findings_table",
    "human_duration",
    "mask_phi",
    "ordered_findings",
    "render_html",
    "write_assessment",
]

logger = logging.getLogger(__name__)

SEVERITY_ORDER = ("error", "warning", "info")
SUBJECTS_SHOWN = 200  # per kind in the HTML; findings.csv has them all
HIDDEN_DETAIL = "(hidden)"
ALL_MODALITIES = "(all)"
_PHI_KEY = "patient #{}"
_FINDINGS_HEADER = ("kind", "severity", "subject", "count", "detail")
_CATALOGUE_HEADER = ("year", "modality", "studies", "bytes")
_SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


# ---------------------------------------------------------------- findings and PHI


def _is_phi(kind: str) -> bool:
    try:
        info = KINDS.get(FindingKind(kind))
    except ValueError:
        return False
    return info is not None and info.subject_is_phi


def _severity_rank(severity: str) -> int:
    return SEVERITY_ORDER.index(severity) if severity in SEVERITY_ORDER else len(SEVERITY_ORDER)


def ordered_findings(groups: list[FindingGroup]) -> list[FindingGroup]:
    """Error, warning, info (unknown severities last); most occurrences first."""
    return sorted(groups, key=lambda g: (_severity_rank(g.severity), -g.occurrences, g.kind))


def _phi_keys(groups: list[FindingGroup]) -> dict[str, str]:
    """Each PHI subject -> ``patient #n``, numbered in report order."""
    keys: dict[str, str] = {}
    for group in ordered_findings(groups):
        if _is_phi(group.kind):
            for subject, _, _ in group.subjects:
                keys.setdefault(subject, _PHI_KEY.format(len(keys) + 1))
    return keys


def _masked_group(group: FindingGroup, keys: dict[str, str]) -> FindingGroup:
    subjects = [
        (keys[subject], count, HIDDEN_DETAIL if detail else "")
        for subject, count, detail in group.subjects
    ]
    return replace(group, subjects=subjects)


def mask_phi(assessment: Assessment) -> Assessment:
    """A copy whose PHI subjects are keyed placeholders (itself when ``show_phi``)."""
    if assessment.show_phi:
        return assessment
    keys = _phi_keys(assessment.findings)
    findings = [
        _masked_group(group, keys) if _is_phi(group.kind) else _redacted_group(group)
        for group in assessment.findings
    ]
    return replace(assessment, findings=findings)


def _redacted_group(group: FindingGroup) -> FindingGroup:
    """Subjects that quote patient keys (query slices) keep their shape, not the values."""
    info = KINDS.get(FindingKind(group.kind)) if group.kind in _KIND_VALUES else None
    if info is None or not info.subject_has_patient_keys:
        return group
    subjects = [(redact_patient_keys(s), count, detail) for s, count, detail in group.subjects]
    return replace(group, subjects=subjects)


_KIND_VALUES = {kind.value for kind in FindingKind}


# ---------------------------------------------------------------- HTML helpers


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _row(cells: list[str], *, tag: str = "td", attrs: str = "") -> str:
    return f"<tr{attrs}>" + "".join(f"<{tag}>{cell}</{tag}>" for cell in cells) + "</tr>"


def _table(headers: list[str], rows: list[str], *, empty: str) -> str:
    if not rows:
        return f'<p class="empty">{_e(empty)}</p>'
    head = _row([_e(h) for h in headers], tag="th")
    return f"<table><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>"


def _tiles(items: list[tuple[str, str]]) -> str:
    tiles = [
        f'<div class="tile"><b>{_e(shown)}</b><span>{_e(label)}</span></div>'
        for shown, label in items
    ]
    return f'<div class="tiles">{"".join(tiles)}</div>'


def _badge(severity: str) -> str:
    return f'<span class="tag sev-{_e(severity)}">{_e(severity)}</span>'


# ---------------------------------------------------------------- HTML sections


def _totals_html(a: Assessment) -> str:
    size = "unknown" if a.size is None else plots.human_bytes(a.size)
    return _tiles(
        [
            (f"{a.studies:,}", "studies"),
            (f"{a.series:,}", "series"),
            (f"{a.instances:,}", "instances"),
            (size, "size known"),
            (f"{a.sized_studies:,} of {a.studies:,}", "studies of known size"),
        ]
    )


def human_duration(seconds: float) -> str:
    """``273600`` -> ``"3 d 4 h"``; ``4500`` -> ``"1 h 15 min"``; ``30`` -> ``"under 1 min"``."""
    minutes = round(seconds / 60)
    if minutes >= 24 * 60:
        days, hours = divmod(round(seconds / 3600), 24)
        return f"{days} d {hours} h"
    if minutes >= 60:
        hours, minutes = divmod(minutes, 60)
        return f"{hours} h {minutes} min"
    return f"{minutes} min" if minutes else "under 1 min"


def _estimate_html(estimate: dict[str, Any]) -> str:
    seconds, throughput = estimate.get("seconds"), estimate.get("throughput")
    hint = estimate.get("hint") or ""
    unknown = estimate.get("basis", "unknown") == "unknown"
    if unknown or not isinstance(seconds, int | float) or not isinstance(throughput, int | float):
        text = f"Unknown. {hint}" if hint else "Unknown: no throughput to estimate from."
        return f'<p class="empty estimate-unknown">{_e(text)}</p>'
    unit = estimate.get("unit", "instances/s")
    tiles = _tiles(
        [
            (human_duration(seconds), "estimated duration"),
            (f"{throughput:,.1f} {unit}", "throughput"),
        ]
    )
    note = f" {_e(hint)}" if hint else ""
    return f'{tiles}<p class="meta">Basis: {_e(estimate["basis"])}.{note}</p>'


def _plots_html(a: Assessment) -> str:
    figures = [
        plots.studies_per_year_svg(a.studies_per_year),
        plots.bytes_per_year_svg(a.bytes_per_year),
        plots.study_size_svg(a.study_sizes, a.study_instance_counts),
        plots.largest_studies_svg(a.largest),
    ]
    return "".join(f'<figure class="plot">{figure}</figure>' for figure in figures)


def _summary_row(group: FindingGroup) -> str:
    title = (
        f'<a href="#kind-{_e(group.kind)}">{_e(group.title)}</a><br><code>{_e(group.kind)}</code>'
    )
    cells = [title, _badge(group.severity), f"{group.count:,}", f"{group.occurrences:,}"]
    return _row([*cells, _e(group.advice)], attrs=f' class="finding" data-kind="{_e(group.kind)}"')


def _summary_html(groups: list[FindingGroup]) -> str:
    headers = ["finding", "severity", "subjects", "occurrences", "what to do"]
    return _table(headers, [_summary_row(g) for g in groups], empty="No findings.")


def _details_html(group: FindingGroup) -> str:
    shown = group.subjects[:SUBJECTS_SHOWN]
    rows = [_row([f"<code>{_e(s)}</code>", f"{c:,}", _e(d)]) for s, c, d in shown]
    more = len(group.subjects) - len(shown)
    note = f'<p class="empty">and {more:,} more (see findings.csv)</p>' if more > 0 else ""
    counts = f"{group.count:,} subjects, {group.occurrences:,} occurrences"
    return (
        f'<details id="kind-{_e(group.kind)}"><summary>{_badge(group.severity)} '
        f'{_e(group.title)} <span class="meta">({_e(counts)})</span></summary>'
        f'<p class="advice">{_e(group.advice)}</p>'
        f"{_table(['subject', 'count', 'detail'], rows, empty='No subjects.')}{note}</details>"
    )


def render_html(assessment: Assessment) -> str:
    """The assessment as one self-contained HTML page (inline CSS and SVG, no scripts)."""
    shown = mask_phi(assessment)
    groups = ordered_findings(shown.findings)
    phi = "shown" if assessment.show_phi else "masked (patient #n placeholders)"
    return _TEMPLATE.substitute(
        source=_e(assessment.source),
        generated_at=_e(assessment.generated_at),
        phi=_e(phi),
        totals=_totals_html(assessment),
        estimate=_estimate_html(assessment.estimate),
        plots=_plots_html(assessment),
        finding_count=_e(f"{len(groups):,}"),
        summary=_summary_html(groups),
        details="".join(_details_html(group) for group in groups),
        notes="".join(f"<li>{_e(note)}</li>" for note in assessment.notes),
        base_css=base_css(),
    )


# ---------------------------------------------------------------- files


def _cell(text: str) -> str:
    """A text cell a spreadsheet will not run as a formula."""
    return "'" + text if text.startswith(_FORMULA_START) else text


def _csv(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def _findings_csv(groups: list[FindingGroup]) -> str:
    rows = [
        (g.kind, g.severity, _cell(subject), count, _cell(detail))
        for g in groups
        for subject, count, detail in g.subjects
    ]
    return _csv(_FINDINGS_HEADER, rows)


def _catalogue_rows(a: Assessment) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = []
    for year in plots.ordered_years([*a.studies_per_year, *a.bytes_per_year]):
        counts = a.studies_per_year.get(year, {})
        for modality in sorted(counts, key=lambda m: m.strip() or plots.NO_MODALITY):
            rows.append((year, _cell(modality.strip() or plots.NO_MODALITY), counts[modality], ""))
        known = a.bytes_per_year.get(year)
        rows.append((year, ALL_MODALITIES, sum(counts.values()), "" if known is None else known))
    return rows


def _write_atomic(path: Path, text: str) -> None:
    """Write beside the target, then rename: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(text.encode("utf-8"))
    tmp.replace(path)


def write_assessment(assessment: Assessment, out_dir: Path) -> dict[str, Path]:
    """Write the HTML, JSON and two CSV files into ``out_dir`` (created); paths by name."""
    out_dir.mkdir(parents=True, exist_ok=True)
    shown = mask_phi(assessment)
    texts = {
        "assessment.html": render_html(assessment),
        "assessment.json": json.dumps(shown.as_dict(), indent=2, ensure_ascii=False) + "\n",
        "findings.csv": _findings_csv(ordered_findings(shown.findings)),
        "catalogue.csv": _csv(_CATALOGUE_HEADER, _catalogue_rows(assessment)),
    }
    paths = {name: out_dir / name for name in texts}
    for name, text in texts.items():
        _write_atomic(paths[name], text)
    logger.info("assessment written to %s", out_dir)
    return paths


# ---------------------------------------------------------------- terminal


def findings_table(assessment: Assessment) -> Table:
    """One row per finding kind (severity order), as a rich table."""
    table = Table(title="pacsmigrate assessment: findings", title_justify="left")
    table.add_column("kind")
    table.add_column("severity")
    table.add_column("subjects", justify="right")
    table.add_column("occurrences", justify="right")
    for group in ordered_findings(assessment.findings):
        severity = Text(group.severity, style=_SEVERITY_STYLE.get(group.severity, ""))
        table.add_row(Text(group.kind), severity, f"{group.count:,}", f"{group.occurrences:,}")
    if not assessment.findings:
        table.caption = "No findings."
    return table


# ---------------------------------------------------------------- template

_TEMPLATE = Template(
    """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>pacsmigrate assessment: $source</title>
<style>
$base_css  .meta, .empty { color: var(--muted); }
  a { color: inherit; }
  .sev-error { background: #e12d39; }
  .sev-warning { background: #f0b429; }
  .sev-info { background: #7b93db; }
  figure.plot { margin: 0 0 1.25rem; }
  figure.plot svg { display: block; width: 100%; max-width: 900px; height: auto; }
  details { border: 1px solid var(--line); border-radius: 6px; padding: .5rem 1rem;
            margin: 0 0 .75rem; }
  summary { cursor: pointer; font-weight: 600; }
  .advice { margin: .5rem 0; }
</style>
</head>
<body>
<main>
<h1>pacsmigrate assessment</h1>
<p class="meta">Source: <code>$source</code>. Generated at $generated_at (UTC).
Patient identity: $phi.</p>

<h2>Totals</h2>
$totals

<h2>Duration estimate</h2>
$estimate

<h2>Catalogue</h2>
$plots

<h2>Findings ($finding_count kinds)</h2>
$summary
<ul class="meta">$notes</ul>

<h2>Findings by kind</h2>
$details
</main>
</body>
</html>
"""
)
