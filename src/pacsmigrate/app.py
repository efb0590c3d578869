"""The library object the CLI (and later the web UI) builds and calls.

``Migration(config)`` owns the ledger, the endpoints and, while a stage needs
it, our embedded Storage SCP. Each method is one stage and can be re-run at
any time; it resumes from what the ledger says.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy import select
from sqlalchemy.orm import Session

from pacsmigrate.config import Config
from pacsmigrate.endpoints.base import parse_dimse_url
from pacsmigrate.endpoints.dimse import DimseEndpoint, Timeouts
from pacsmigrate.endpoints.storescp import StorageSCP
from pacsmigrate.engine.local import MigrateSummary, run_studies
from pacsmigrate.errors import ConfigError
from pacsmigrate.inventory.crawl import InventorySummary, run_inventory
from pacsmigrate.ledger import repo
from pacsmigrate.ledger.db import Ledger, open_ledger
from pacsmigrate.ledger.models import Instance, Study
from pacsmigrate.ledger.states import StudyState
from pacsmigrate.preflight.checks import PreflightResult, run_preflight
from pacsmigrate.report.report import build_report, write_reports
from pacsmigrate.transfer.relay import RelayContext, migrate_study
from pacsmigrate.verify.target import VerifySummary, run_verify

__all__ = ["Migration", "RunResult"]

LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunResult:
    report: dict[str, Any]
    json_path: Path
    html_path: Path

    @property
    def complete(self) -> bool:
        """Every study is verified or deliberately excluded."""
        states = self.report["studies_by_state"]
        done = int(states.get("verified", 0)) + int(states.get("excluded", 0))
        return done == int(self.report["totals"]["studies"])


class Migration:
    def __init__(self, config: Config) -> None:
        self.config = config
        for name in ("source.url", "target.url"):
            if not config[name]:
                raise ConfigError(
                    f"setting '{name}' is empty: set it in pacsmigrate.toml or pass"
                    f" --{name.split('.')[0]} URL"
                )
        calling = str(config["local.ae_title"])
        self.source_address = parse_dimse_url(str(config["source.url"]), calling)
        self.target_address = parse_dimse_url(str(config["target.url"]), calling)
        self.timeouts = Timeouts(
            connect=float(config["network.connect_timeout"]),
            acse=float(config["network.acse_timeout"]),
            dimse=float(config["network.dimse_timeout"]),
            max_pdu=int(config["network.max_pdu"]),
        )
        self.source = DimseEndpoint(self.source_address, self.timeouts, move_destination=calling)
        self.target = DimseEndpoint(self.target_address, self.timeouts)
        self.spool_dir = config.path("spool.dir")
        self._ledger: Ledger | None = None

    @property
    def ledger(self) -> Ledger:
        if self._ledger is None:
            self._ledger = open_ledger(self.config.ledger_url)
        return self._ledger

    def close(self) -> None:
        if self._ledger is not None:
            self._ledger.close()

    # helpers -------------------------------------------------------------
    def _sop_classes_in_ledger(self) -> tuple[list[str], bool]:
        """SOP classes the inventory found, and whether some instance's class is unknown
        (C-FIND may leave SOPClassUID out), in which case every storage class is needed."""
        with self.ledger.session() as session:
            found = list(session.scalars(select(Instance.sop_class_uid).distinct()))
        return sorted(c for c in found if c), "" in found or not found

    @contextmanager
    def _scp(self) -> Iterator[StorageSCP | None]:
        """Our Storage SCP while a stage needs it (C-MOVE sources only)."""
        if self.source_address.retrieve == "get":
            yield None
            return
        known, unknown = self._sop_classes_in_ledger()
        scp = StorageSCP(
            str(self.config["local.ae_title"]),
            str(self.config["local.host"]),
            int(self.config["local.port"]),
            self.spool_dir,
            sop_classes=known,
            all_storage=unknown,
            max_pdu=self.timeouts.max_pdu,
        )
        with scp:
            yield scp

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        """One migrating process per project: a second one gets a clear error."""
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        lock_path = self.spool_dir / ".lock"
        handle: TextIO = lock_path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            handle.seek(0)
            raise ConfigError(
                f"another pacsmigrate process (pid {handle.read().strip() or '?'}) is working"
                f" on {self.config.project_dir}; wait for it or stop it first"
            ) from exc
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()

    # stages ----------------------------------------------------------------
    def preflight(self) -> PreflightResult:
        with self._exclusive(), self._scp() as scp:
            return run_preflight(
                self.source,
                self.target,
                scp,
                spool_root=self.spool_dir,
                quiet=float(self.config["migrate.quiet_period"]),
            )

    def inventory(self) -> InventorySummary:
        return run_inventory(self.source, self.ledger)

    def migrate(self, *, retry_failed: bool = False) -> MigrateSummary:
        with self._exclusive():
            with self.ledger.session() as session:
                requeued = repo.requeue_stale_leases(session)
                repo.close_stale_runs(session)
                if retry_failed:
                    self._requeue(session, (StudyState.FAILED, StudyState.QUARANTINED))
                repo.queue_discovered(session)
                run = repo.start_run(session, "migrate")
                session.commit()
            with self._scp() as scp:
                context = RelayContext(
                    source=self.source,
                    target=self.target,
                    scp=scp,
                    ledger=self.ledger,
                    spool_dir=self.spool_dir,
                    quiet_period=float(self.config["migrate.quiet_period"]),
                )
                summary = run_studies(
                    self.ledger,
                    lambda study_id: migrate_study(context, study_id),
                    workers=int(self.config["migrate.workers"]),
                    max_attempts=int(self.config["migrate.max_attempts"]),
                )
            summary.requeued_after_crash = requeued
            with self.ledger.session() as session:
                run = session.merge(run)
                repo.finish_run(session, run, "completed", summary.outcomes)
                session.commit()
            return summary

    @staticmethod
    def _requeue(session: Session, states: tuple[StudyState, ...]) -> None:
        for study in session.scalars(
            select(Study).where(Study.state.in_([s.value for s in states]))
        ):
            study.attempts = 0
            repo.set_state(session, study, StudyState.QUEUED, "queued again by --retry-failed")

    def verify(self, *, recheck: bool = False) -> VerifySummary:
        return run_verify(self.target, self.ledger, recheck=recheck)

    def report(self, *, show_phi: bool = False) -> RunResult:
        with self.ledger.session() as session:
            report = build_report(session, show_phi=show_phi)
        json_path, html_path = write_reports(report, self.config.path("report.dir"))
        return RunResult(report=report, json_path=json_path, html_path=html_path)

    def status(self) -> dict[str, int]:
        with self.ledger.session() as session:
            return repo.counts_by_state(session)
