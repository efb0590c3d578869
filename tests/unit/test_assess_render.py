"""Tests for the assessment report (pacsmigrate.assess.render and .plots), on hand-made data."""

from __future__ import annotations

import csv
import io
import json
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from pacsmigrate.assess import plots
from pacsmigrate.assess.model import Assessment, FindingGroup, LargeStudy
from pacsmigrate.assess.render import (
    findings_table,
    human_duration,
    render_html,
    write_assessment,
)
from pacsmigrate.ledger.findings import KINDS, FindingKind

PATIENT_ID = "MRN-7731942"
OTHER_PATIENT_ID = "MRN-0042"
PATIENT_NAME = "Doe^Jane"
EVIL = "<script>alert('x')</script> & more"
HINT = "Run preflight against the target to measure its throughput."


def _group(kind: FindingKind, subjects: list[tuple[str, int, str]]) -> FindingGroup:
    info = KINDS[kind]
    return FindingGroup(kind.value, info.severity.value, info.title, info.advice, subjects)


def _findings() -> list[FindingGroup]:
    # listed out of severity order on purpose
    return [
        _group(
            FindingKind.PRIVATE_CREATOR,
            [("SIEMENS CSA HEADER", 120, "(0029,xx10)"), (EVIL, 4, EVIL)],
        ),
        _group(FindingKind.UNKNOWN_CHARSET, [("ISO_IR 999", 40, "SpecificCharacterSet")]),
        _group(
            FindingKind.PATIENT_ID_CONFLICT,
            [
                (PATIENT_ID, 3, f"PatientName: {PATIENT_NAME} / Doe^Janet"),
                (OTHER_PATIENT_ID, 2, ""),
            ],
        ),
        _group(FindingKind.INVALID_UID, [("1.2.03.4", 5, "StudyInstanceUID")]),
    ]


def _assessment(**changes: Any) -> Assessment:
    base = Assessment(
        source="OLDPACS@127.0.0.1:4242",
        generated_at="2024-05-01T12:00:00+00:00",
        studies=10,
        series=25,
        instances=1234,
        size=5_500_000_000,
        sized_studies=9,
        studies_per_year={
            "2021": {"CT": 2, "US": 2},
            "unknown": {"": 2},
            "2019": {"CT": 3, "MR": 1},
        },
        bytes_per_year={"2019": 3_000_000_000, "2021": 2_500_000_000},
        study_sizes=[10_000_000, 40_000_000, 90_000_000, 200_000_000, 400_000_000]
        + [600_000_000, 800_000_000, 1_200_000_000, 2_160_000_000],
        study_instance_counts=[1, 3, 8, 20, 50, 80, 120, 300, 600, 52],
        largest=[
            LargeStudy("1.2.3.1", "20190304", "CT\\SR", 600, 2_160_000_000),
            LargeStudy("1.2.3.2", "", "MR", 300, 1_200_000_000),
        ],
        findings=_findings(),
        estimate={
            "throughput": 120.0,
            "unit": "instances/s",
            "basis": "measured by preflight",
            "seconds": 273_600.0,
        },
    )
    return replace(base, **changes)


def _no_sizes() -> Assessment:
    return _assessment(
        size=None,
        sized_studies=0,
        bytes_per_year={},
        study_sizes=[],
        largest=[LargeStudy("1.2.3.1", "20190304", "CT", 600, None)],
    )


@pytest.fixture(scope="module")
def page() -> str:
    return render_html(_assessment())


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_assessment(_assessment(), tmp_path_factory.mktemp("assessment"))


@pytest.fixture(scope="module")
def crowded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Files for one kind with 250 subjects and one with spreadsheet formulas."""
    subjects = [(f"1.2.840.99.{i}", i + 1, "") for i in range(250)]
    many = _group(FindingKind.ZERO_IMAGE_STUDY, subjects)
    formulas = _group(FindingKind.PRIVATE_CREATOR, [("=HYPERLINK(1)", 1, "@SUM(A1)")])
    return write_assessment(
        _assessment(findings=[formulas, many]), tmp_path_factory.mktemp("crowded")
    )


def _csv_rows(path: Path) -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))


def _summary_rows(page: str) -> list[tuple[str, list[str]]]:
    rows = re.findall(r'<tr class="finding" data-kind="([^"]+)">(.*?)</tr>', page)
    return [(kind, re.findall(r"<td>(.*?)</td>", cells)) for kind, cells in rows]


# ---------------------------------------------------------------- HTML


def test_html_has_four_svg_plots_with_unique_ids(page: str) -> None:
    assert page.count("<svg") == 4
    assert "<?xml" not in page and "<!DOCTYPE svg" not in page
    ids = re.findall(r'\bid="([^"]+)"', page)
    assert len(ids) > 20
    assert len(ids) == len(set(ids))
    # every in-page reference (clip paths, glyphs) points at an id of the page
    refs = set(re.findall(r'(?:url\(#|href="#)([^)"]+)', page))
    assert refs and refs <= set(ids)


def test_html_is_self_contained(page: str) -> None:
    assert "<script" not in page
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert "@import" not in page and "@font-face" not in page


def test_summary_rows_in_severity_order_with_counts(page: str) -> None:
    rows = _summary_rows(page)
    assert [kind for kind, _ in rows] == [
        "invalid_uid",
        "unknown_charset",  # the warning with most occurrences first, not by name
        "patient_id_conflict",
        "private_creator",
    ]
    # (severity badge, subjects, occurrences)
    facts = [(re.sub(r"<[^>]+>", "", cells[1]), cells[2], cells[3]) for _, cells in rows]
    assert facts == [
        ("error", "1", "5"),
        ("warning", "1", "40"),
        ("warning", "2", "5"),
        ("info", "2", "124"),
    ]
    assert KINDS[FindingKind.INVALID_UID].advice in rows[0][1][4]


def test_header_and_totals(page: str) -> None:
    assert "OLDPACS@127.0.0.1:4242" in page
    assert "2024-05-01T12:00:00+00:00" in page
    assert "<b>1,234</b><span>instances</span>" in page
    assert "<b>5.5 GB</b><span>size known</span>" in page
    assert "<b>9 of 10</b><span>studies of known size</span>" in page


def test_everything_is_escaped(page: str) -> None:
    assert EVIL not in page
    assert html_escaped(EVIL) in page


def html_escaped(text: str) -> str:
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace("'", "&#x27;")
        .replace('"', "&quot;")
    )


def test_known_estimate(page: str) -> None:
    assert "<b>3 d 4 h</b><span>estimated duration</span>" in page
    assert "<b>120.0 instances/s</b><span>throughput</span>" in page
    assert "Basis: measured by preflight." in page
    assert "estimate-unknown" not in page


def test_unknown_estimate() -> None:
    page = render_html(_assessment(estimate={"basis": "unknown", "hint": HINT}))
    assert f'<p class="empty estimate-unknown">Unknown. {HINT}</p>' in page
    assert "estimated duration" not in page


def test_no_sizes_placeholder() -> None:
    page = render_html(_no_sizes())
    assert plots.NO_SIZES in page
    assert page.count("<svg") == 3
    assert "<b>unknown</b><span>size known</span>" in page
    # the histogram falls back to instances per study (matplotlib keeps text in comments)
    assert "Instances per study (study sizes unknown)" in page
    assert "Study size distribution" not in page


def test_subject_list_capped_with_more_line(page: str, crowded: dict[str, Path]) -> None:
    capped = crowded["assessment.html"].read_text(encoding="utf-8")
    details = re.search(r'<details id="kind-zero_image_study">(.*?)</details>', capped, re.S)
    assert details is not None
    assert details.group(1).count("<code>1.2.840.99.") == 200
    assert "1.2.840.99.199<" in details.group(1) and "1.2.840.99.200<" not in details.group(1)
    assert "and 50 more (see findings.csv)" in details.group(1)
    assert "more (see findings.csv)" not in page


# ---------------------------------------------------------------- PHI


def test_phi_masked_everywhere_by_default(page: str, written: dict[str, Path]) -> None:
    texts = [page] + [path.read_text(encoding="utf-8") for path in written.values()]
    for text in texts:
        for secret in (PATIENT_ID, OTHER_PATIENT_ID, PATIENT_NAME):
            assert secret not in text
    assert "<code>patient #1</code>" in page and "<code>patient #2</code>" in page
    document = json.loads(written["assessment.json"].read_text(encoding="utf-8"))
    conflict = next(f for f in document["findings"] if f["kind"] == "patient_id_conflict")
    assert conflict["subjects"] == [["patient #1", 3, "(hidden)"], ["patient #2", 2, ""]]
    assert conflict["count"] == 2 and conflict["occurrences"] == 5


def test_phi_shown_on_request(tmp_path: Path) -> None:
    paths = write_assessment(_assessment(show_phi=True), tmp_path)
    page = paths["assessment.html"].read_text(encoding="utf-8")
    assert f"<code>{PATIENT_ID}</code>" in page and PATIENT_NAME in page
    assert "patient #1" not in page
    assert [
        row[2] for row in _csv_rows(paths["findings.csv"]) if row[0] == "patient_id_conflict"
    ] == [PATIENT_ID, OTHER_PATIENT_ID]
    assert PATIENT_ID in paths["assessment.json"].read_text(encoding="utf-8")


# ---------------------------------------------------------------- files


def test_findings_csv_one_row_per_subject(written: dict[str, Path]) -> None:
    assert _csv_rows(written["findings.csv"]) == [
        ["kind", "severity", "subject", "count", "detail"],
        ["invalid_uid", "error", "1.2.03.4", "5", "StudyInstanceUID"],
        ["unknown_charset", "warning", "ISO_IR 999", "40", "SpecificCharacterSet"],
        ["patient_id_conflict", "warning", "patient #1", "3", "(hidden)"],
        ["patient_id_conflict", "warning", "patient #2", "2", ""],
        ["private_creator", "info", "SIEMENS CSA HEADER", "120", "(0029,xx10)"],
        ["private_creator", "info", EVIL, "4", EVIL],
    ]


def test_findings_csv_has_every_subject_past_the_html_cap(crowded: dict[str, Path]) -> None:
    rows = [row for row in _csv_rows(crowded["findings.csv"]) if row[0] == "zero_image_study"]
    assert len(rows) == 250
    assert rows[-1] == ["zero_image_study", "warning", "1.2.840.99.249", "250", ""]


def test_catalogue_csv(written: dict[str, Path]) -> None:
    assert _csv_rows(written["catalogue.csv"]) == [
        ["year", "modality", "studies", "bytes"],
        ["2019", "CT", "3", ""],
        ["2019", "MR", "1", ""],
        ["2019", "(all)", "4", "3000000000"],
        ["2021", "CT", "2", ""],
        ["2021", "US", "2", ""],
        ["2021", "(all)", "4", "2500000000"],
        ["unknown", "(none)", "2", ""],
        ["unknown", "(all)", "2", ""],
    ]


def test_spreadsheet_formulas_are_defused(crowded: dict[str, Path]) -> None:
    row = _csv_rows(crowded["findings.csv"])[-1]
    assert row == ["private_creator", "info", "'=HYPERLINK(1)", "1", "'@SUM(A1)"]


def test_writing_twice_gives_identical_files(written: dict[str, Path], tmp_path: Path) -> None:
    again = write_assessment(_assessment(), tmp_path)
    assert sorted(again) == ["assessment.html", "assessment.json", "catalogue.csv", "findings.csv"]
    for name, path in written.items():
        assert again[name].read_bytes() == path.read_bytes(), name
    assert not list(tmp_path.glob(".*.tmp"))


# ---------------------------------------------------------------- terminal and helpers


def test_findings_table_order_and_counts() -> None:
    console = Console(record=True, width=120)
    console.print(findings_table(_assessment()))
    lines = [line.split() for line in console.export_text().splitlines() if "│" in line]
    cells = [[c for c in line if c != "│"] for line in lines]  # data rows only
    assert cells == [
        ["invalid_uid", "error", "1", "5"],
        ["unknown_charset", "warning", "1", "40"],
        ["patient_id_conflict", "warning", "2", "5"],
        ["private_creator", "info", "2", "124"],
    ]


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0, "under 1 min"),
        (29, "under 1 min"),
        (90, "2 min"),
        (4_500, "1 h 15 min"),
        (86_399, "1 d 0 h"),
        (273_600, "3 d 4 h"),
    ],
    ids=["zero", "seconds", "minutes", "hours", "almost-a-day", "days"],
)
def test_human_duration(seconds: float, shown: str) -> None:
    assert human_duration(seconds) == shown


def test_plots_are_identical_when_drawn_in_threads() -> None:
    data = _assessment().bytes_per_year
    serial = plots.bytes_per_year_svg(data)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: plots.bytes_per_year_svg(data), range(8)))
    assert results == [serial] * 8


def test_year_order_puts_unknown_last() -> None:
    assert plots.ordered_years(["unknown", "2021", "1999", "2019"]) == [
        "1999",
        "2019",
        "2021",
        "unknown",
    ]
