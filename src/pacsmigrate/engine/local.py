"""The local engine: several studies in flight in one process, bounded retries.

Threads, not processes: the work is network and disk I/O (pynetdicom itself
runs each association in a thread), and one process keeps one embedded
Storage SCP that every retrieve shares. A configuration error (the source does
not know our AE, an association is rejected) stops the whole run at once;
transient errors are retried with backoff and jitter; anything else fails that
study alone with its reason.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from sqlalchemy import select

from pacsmigrate.errors import (
    AssociationRejected,
    MoveDestinationUnknown,
    PacsmigrateError,
    TransientError,
)
from pacsmigrate.ledger import repo
from pacsmigrate.ledger.db import Ledger
from pacsmigrate.ledger.models import Study
from pacsmigrate.ledger.states import StudyState

__all__ = ["MigrateSummary", "run_studies"]

LOGGER = logging.getLogger(__name__)
_FATAL = (MoveDestinationUnknown, AssociationRejected)


@dataclass
class MigrateSummary:
    outcomes: dict[str, int] = field(default_factory=dict)
    requeued_after_crash: int = 0

    def count(self, state: StudyState) -> None:
        self.outcomes[state.value] = self.outcomes.get(state.value, 0) + 1


def _backoff(attempt: int, base: float) -> float:
    delay: float = min(60.0, base * 2.0 ** (attempt - 1))
    return delay * (0.5 + random.random())


class _Runner:
    def __init__(
        self,
        ledger: Ledger,
        work: Callable[[int], StudyState],
        max_attempts: int,
        backoff_base: float,
    ) -> None:
        self.ledger = ledger
        self.work = work
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.stop = threading.Event()

    def _claim(self, study_id: int) -> bool:
        with self.ledger.session() as session:
            claimed = repo.claim_study(session, study_id)
            session.commit()
            return claimed

    def _settle(self, study_id: int, state: StudyState, exc: BaseException) -> int:
        """Record a failed attempt; return the attempt count."""
        with self.ledger.session() as session:
            study = session.get_one(Study, study_id)
            reason = str(exc) or type(exc).__name__
            repo.set_state(session, study, state, reason, error_class=type(exc).__name__)
            repo.audit(
                session,
                "migrate",
                state.value,
                study.study_uid,
                attempt=study.attempts,
                error=type(exc).__name__,
            )
            session.commit()
            return study.attempts

    def run_one(self, study_id: int) -> StudyState | None:
        while not self.stop.is_set():
            if not self._claim(study_id):
                return None
            try:
                return self.work(study_id)
            except TransientError as exc:
                attempts = self._attempts(study_id)
                final = attempts >= self.max_attempts
                LOGGER.warning("study #%d attempt %d failed: %s", study_id, attempts, exc)
                self._settle(study_id, StudyState.FAILED if final else StudyState.QUEUED, exc)
                if final:
                    return StudyState.FAILED
                self.stop.wait(_backoff(attempts, self.backoff_base))
            except _FATAL as exc:
                self._settle(study_id, StudyState.QUEUED, exc)
                self.stop.set()
                raise
            except PacsmigrateError as exc:
                self._settle(study_id, StudyState.FAILED, exc)
                return StudyState.FAILED
            except Exception as exc:  # a bug or broken data: this study fails, the run goes on
                LOGGER.exception("study #%d failed unexpectedly", study_id)
                self._settle(study_id, StudyState.FAILED, exc)
                return StudyState.FAILED
        return None

    def _attempts(self, study_id: int) -> int:
        with self.ledger.session() as session:
            return session.get_one(Study, study_id).attempts


def _queued_ids(ledger: Ledger) -> list[int]:
    with ledger.session() as session:
        return list(
            session.scalars(
                select(Study.id).where(Study.state == StudyState.QUEUED.value).order_by(Study.id)
            )
        )


def run_studies(
    ledger: Ledger,
    work: Callable[[int], StudyState],
    *,
    workers: int,
    max_attempts: int,
    backoff_base: float = 2.0,
    on_done: Callable[[int, StudyState | None], None] | None = None,
) -> MigrateSummary:
    """Run ``work`` on every queued study with ``workers`` threads."""
    summary = MigrateSummary()
    runner = _Runner(ledger, work, max_attempts, backoff_base)
    ids = _queued_ids(ledger)
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="study")
    try:
        futures: dict[Future[StudyState | None], int] = {
            pool.submit(runner.run_one, study_id): study_id for study_id in ids
        }
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for future in done:
                state = future.result()  # re-raises a fatal error
                if state is not None:
                    summary.count(state)
                if on_done is not None:
                    on_done(futures[future], state)
    except KeyboardInterrupt:
        # Leave at once: studies still marked transferring carry our pid and
        # go back to queued on the next run.
        runner.stop.set()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    finally:
        runner.stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
    return summary
