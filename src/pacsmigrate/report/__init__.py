"""Report stage: reconciliation report from the ledger (JSON, HTML, terminal table)."""

from __future__ import annotations

from pacsmigrate.report.report import (
    FAILURE_STATES,
    RUNS_SHOWN,
    build_report,
    render_html,
    summary_table,
    write_reports,
)

__all__ = [
    "FAILURE_STATES",
    "RUNS_SHOWN",
    "build_report",
    "render_html",
    "summary_table",
    "write_reports",
]
