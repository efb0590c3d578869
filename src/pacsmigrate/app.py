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
from datetime import date
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy import select
from sqlalchemy.orm import Session

from pacsmigrate.assess.model import Assessment
from pacsmigrate.assess.render import write_assessment
from pacsmigrate.assess.stage import AssessOptions, run_assess
from pacsmigrate.config import Config
from pacsmigrate.endpoints.base import Endpoint
from pacsmigrate.endpoints.dimse import DimseEndpoint, Timeouts
from pacsmigrate.endpoints.factory import open_endpoint
from pacsmigrate.endpoints.filesystem import FolderEndpoint
from pacsmigrate.endpoints.storescp import StorageSCP
from pacsmigrate.engine.local import MigrateSummary, run_studies
from pacsmigrate.errors import ConfigError
from pacsmigrate.inventory.crawl import InventoryOptions, InventorySummary, run_inventory
from pacsmigrate.inventory.files import run_folder_inventory
from pacsmigrate.ledger import repo
from pacsmigrate.ledger.db import Ledger, open_ledger
from pacsmigrate.ledger.models import Instance, Study
from pacsmigrate.ledger.states import StudyState
from pacsmigrate.preflight.checks import PreflightResult, run_preflight
from pacsmigrate.report.report import build_report, write_reports
from pacsmigrate.transfer.relay import RelayContext, migrate_study
from pacsmigrate.verify.target import VerifySummary, run_verify

__all__ = ["AssessResult", "Migration", "RunResult"]

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


def _date_setting(value: str) -> date:
    try:
        return date(int(value[:4]), int(value[4:6]), int(value[6:8]))
    except ValueError as exc:
        raise ConfigError(
            f"inventory.earliest_date {value!r} is not a date: write it as YYYYMMDD"
        ) from exc


@dataclass(frozen=True)
class AssessResult:
    assessment: Assessment
    paths: dict[str, Path]


class Migration:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.calling_ae = str(config["local.ae_title"])
        self.timeouts = Timeouts(
            connect=float(config["network.connect_timeout"]),
            acse=float(config["network.acse_timeout"]),
            dimse=float(config["network.dimse_timeout"]),
            max_pdu=int(config["network.max_pdu"]),
        )
        self.source = self._endpoint("source.url")
        self._target: Endpoint | None = None
        self.spool_dir = config.path("spool.dir")
        self._ledger: Ledger | None = None

    def _endpoint(self, setting: str) -> Endpoint:
        url = str(self.config[setting])
        if not url:
            raise ConfigError(
                f"setting '{setting}' is empty: set it in pacsmigrate.toml or pass"
                f" --{setting.split('.', maxsplit=1)[0]} URL"
            )
        return open_endpoint(url, calling_ae=self.calling_ae, timeouts=self.timeouts)

    @property
    def target(self) -> Endpoint:
        """The target, opened when a stage first needs it (inventory does not)."""
        if self._target is None:
            self._target = self._endpoint("target.url")
        return self._target

    @property
    def has_target(self) -> bool:
        return bool(self.config["target.url"])

    def _require(self, stage: str) -> None:
        """Migrating needs a source we can retrieve from and a target we can store to."""
        if not self.source.capabilities.can_retrieve:
            raise ConfigError(
                f"{stage} needs a source it can retrieve from; this version inventories and"
                f" assesses {self.config['source.url']} but migrates from dimse:// sources only"
            )
        if not self.target.capabilities.can_store:
            raise ConfigError(
                f"{stage} needs a target it can store to; {self.config['target.url']}"
                " cannot be a target in this version (use a dimse:// target)"
            )

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
        if isinstance(self.source, DimseEndpoint) and self.source.address.retrieve == "get":
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
        self._require("preflight")
        with self._exclusive(), self._scp() as scp:
            return run_preflight(
                self.source,
                self.target,
                scp,
                spool_root=self.spool_dir,
                quiet=float(self.config["migrate.quiet_period"]),
            )

    def inventory(self, *, full: bool = False) -> InventorySummary:
        if isinstance(self.source, FolderEndpoint):
            return run_folder_inventory(self.source, self.ledger)
        options = InventoryOptions(
            find_cap=int(self.config["inventory.find_cap"]),
            earliest=_date_setting(str(self.config["inventory.earliest_date"])),
            full=full,
        )
        return run_inventory(self.source, self.ledger, options)

    def migrate(self, *, retry_failed: bool = False) -> MigrateSummary:
        self._require("migrate")
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

    def assess(self, *, probe: bool = True, show_phi: bool = False) -> AssessResult:
        target = self.target if probe and self.has_target else None
        options = AssessOptions(
            source_label=self.source.label,
            target=target if isinstance(target, DimseEndpoint) else None,
            retention_years=int(self.config["assess.retention_years"]),
            throughput=float(self.config["assess.throughput"]),
            show_phi=show_phi,
        )
        with self.ledger.session() as session:
            assessment = run_assess(session, options)
        if not probe:
            assessment.notes.append("Target not probed (--no-probe).")
        paths = write_assessment(assessment, self.config.path("report.dir"))
        return AssessResult(assessment, paths)

    def status(self) -> dict[str, int]:
        with self.ledger.session() as session:
            return repo.counts_by_state(session)
