"""``kill -9`` of a running ``pacsmigrate migrate``, then ``migrate`` again.

The issue's crash test: a real ``pacsmigrate migrate`` subprocess is killed
with SIGKILL at a seeded random point (three kinds of point), then
``migrate`` and ``verify`` run again as a user would. The run must complete,
every study must end ``verified``, the target must hold each source instance
exactly once, and the ledger and the spool must be consistent.
"""

from __future__ import annotations

import math
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from pacsmigrate.ledger import repo
from pacsmigrate.ledger.db import open_ledger
from pacsmigrate.ledger.models import AuditRecord
from pacsmigrate.testing.hospital import GeneratedInstance, generate_hospital
from pacsmigrate.testing.orthanc import running_pair
from tests.conftest import CALLING_AE, Peers, needs_orthanc, run_cli

pytestmark = [needs_orthanc, pytest.mark.orthanc]

DEADLINE = 120.0  # seconds to reach a kill point
STAGE_DEADLINE = 120.0  # seconds for migrate or verify after the kill
POLL = 0.02  # seconds between two looks at the ledger or the target
SEED = 7


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[GeneratedInstance]:
    """A larger hospital than the session one (159 instances, 30 studies): kills land mid-run."""
    return generate_hospital(tmp_path_factory.mktemp("hospital-crash"), seed=SEED, scale=3)


@pytest.fixture
def crash_peers(tmp_path: Path, corpus: list[GeneratedInstance]) -> Iterator[Peers]:
    """A source Orthanc loaded with ``corpus`` and an empty target, like conftest's ``peers``."""
    with running_pair(tmp_path, [item.path for item in corpus], calling_ae=CALLING_AE) as pair:
        yield Peers(source=pair.source, target=pair.target, scp_port=pair.scp_port)


# Reading the ledger (read-only, while the migrating process writes it) -------


def _study_states(ledger: Path) -> dict[str, int]:
    """Studies per state; empty if SQLite is busy right now (the next poll tries again)."""
    try:
        with closing(sqlite3.connect(f"file:{ledger}?mode=ro", uri=True, timeout=1)) as db:
            return dict(db.execute("SELECT state, count(*) FROM studies GROUP BY state").fetchall())
    except sqlite3.OperationalError:
        return {}


def _query(ledger: Path, sql: str) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(f"file:{ledger}?mode=ro", uri=True)) as db:
        return db.execute(sql).fetchall()


# Kill points ----------------------------------------------------------------


@dataclass(frozen=True)
class Scene:
    """What a kill point may look at: the ledger file, the peers and the corpus size."""

    ledger: Path
    peers: Peers
    instances: int
    studies: int


@dataclass(frozen=True)
class KillPoint:
    """A condition on the ledger or the target; ``describe`` says what it waits for."""

    describe: str
    reached: Callable[[], bool]


def _point_transferring(_rng: random.Random, scene: Scene) -> KillPoint:
    return KillPoint(
        "at least one study 'transferring'",
        lambda: _study_states(scene.ledger).get("transferring", 0) >= 1,
    )


def _point_target_count(rng: random.Random, scene: Scene) -> KillPoint:
    total = scene.instances
    k = rng.randint(math.ceil(0.1 * total), math.floor(0.7 * total))
    return KillPoint(
        f"the target holding at least {k} of {total} instances",
        lambda: int(scene.peers.target.statistics()["CountInstances"]) >= k,
    )


def _point_some_transferred(rng: random.Random, scene: Scene) -> KillPoint:
    j = rng.randint(1, scene.studies // 2)

    def reached() -> bool:
        transferred = _study_states(scene.ledger).get("transferred", 0)
        return j <= transferred < scene.studies

    return KillPoint(f"at least {j} (not all {scene.studies}) studies 'transferred'", reached)


KILL_POINTS = [_point_transferring, _point_target_count, _point_some_transferred]
KILL_IDS = ["early-transferring", "target-holds-k-instances", "some-studies-transferred"]


def _kill_when(process: subprocess.Popen[bytes], point: KillPoint, log: Path) -> None:
    """Wait (deadline ``DEADLINE``) for ``point``, then SIGKILL ``process`` while it still runs."""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        if point.reached():
            if process.poll() is not None:
                break
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
            return
        try:  # the pause between two polls; returns at once if the process ends
            process.wait(timeout=POLL)
        except subprocess.TimeoutExpired:
            continue
        break
    output = log.read_text(errors="replace")[-3000:]
    if process.poll() is None:
        pytest.fail(f"kill point not reached within {DEADLINE:.0f} s: {point.describe}\n{output}")
    pytest.fail(
        f"migrate ended (exit {process.returncode}) before the kill point was reached:"
        f" {point.describe}; choose an earlier point or a larger corpus\n{output}"
    )


# The test -------------------------------------------------------------------


@pytest.mark.parametrize("make_point", KILL_POINTS, ids=KILL_IDS)
def test_kill_9_then_migrate_again_completes_without_duplicates(
    tmp_path: Path,
    crash_peers: Peers,
    corpus: list[GeneratedInstance],
    make_point: Callable[[random.Random, Scene], KillPoint],
) -> None:
    peers = crash_peers
    project = peers.init_project(tmp_path / "project")
    ledger = project / "ledger.sqlite"
    total = int(peers.source.statistics()["CountInstances"])
    studies = len({item.study_uid for item in corpus})
    assert total == len(corpus)

    inventory = run_cli("-C", str(project), "inventory")
    assert inventory.returncode == 0, inventory.stderr

    rng = random.Random(f"{SEED}-{make_point.__name__}")
    point = make_point(rng, Scene(ledger, peers, total, studies))
    log = tmp_path / "killed-migrate.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "pacsmigrate", "-C", str(project), "migrate", "--workers", "3"],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        _kill_when(process, point, log)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL, log.read_text(errors="replace")
    acknowledged = _query(ledger, "SELECT count(*) FROM instances WHERE stored_at IS NOT NULL")
    killed_at = (
        f"killed at: {point.describe}; then studies {_study_states(ledger)},"
        f" target {peers.target.statistics()['CountInstances']} instances,"
        f" ledger {acknowledged[0][0]} acknowledged"
    )

    print(killed_at)
    again = _run_stage(project, "migrate", killed_at)
    verify = _run_stage(project, "verify", killed_at)

    history = f"{killed_at}\nmigrate again: {again.stdout}{again.stderr}verify: {verify.stdout}"
    _assert_ledger_consistent(ledger, studies, total, history)
    # the target: each source instance exactly once, nothing else
    assert int(peers.target.statistics()["CountInstances"]) == total, killed_at
    assert set(peers.target.sop_instance_index()) == {item.sop_instance_uid for item in corpus}
    _assert_spool_clean(project / "spool")


def _run_stage(project: Path, stage: str, killed_at: str) -> subprocess.CompletedProcess[str]:
    """``pacsmigrate -C project STAGE`` must exit 0 within ``STAGE_DEADLINE`` (normally ~10 s)."""
    try:
        result = run_cli("-C", str(project), stage, timeout=STAGE_DEADLINE)
    except subprocess.TimeoutExpired as exc:
        output = "".join(
            part.decode(errors="replace") if isinstance(part, bytes) else part
            for part in (exc.stdout or "", exc.stderr or "")
        )
        pytest.fail(
            f"{stage} after the kill did not end within {STAGE_DEADLINE:.0f} s"
            f" ({killed_at})\n{output}"
        )
    output = f"{result.stdout}{result.stderr}"
    assert result.returncode == 0, f"{stage} after the kill: {killed_at}\n{output}"
    return result


def _assert_ledger_consistent(ledger: Path, studies: int, total: int, history: str) -> None:
    """Every study verified and released, every instance acknowledged, hashed and present."""
    states = dict(_query(ledger, "SELECT state, count(*) FROM studies GROUP BY state"))
    assert states == {"verified": studies}, history
    # the kill is not an attempt (requeue_stale_leases), and nothing else disturbed the run
    retried_or_leased = _query(
        ledger,
        "SELECT study_uid, attempts, lease_pid, reason FROM studies"
        " WHERE attempts != 1 OR lease_pid != 0 OR lease_host != ''",
    )
    assert retried_or_leased == [], history
    assert _query(ledger, "SELECT count(*) FROM instances") == [(total,)]
    unfinished = _query(
        ledger,
        "SELECT sop_instance_uid, stored_at, store_status, sha256, verify_state FROM instances"
        " WHERE stored_at IS NULL OR store_status IS NOT 0 OR sha256 IS NULL OR sha256 = ''"
        " OR verify_state != 'present'",
    )
    assert unfinished == [], history
    migrate_runs = _query(ledger, "SELECT outcome FROM runs WHERE stage = 'migrate' ORDER BY id")
    assert len(migrate_runs) >= 2, migrate_runs
    assert migrate_runs[-1] == ("completed",), migrate_runs
    opened = open_ledger(f"sqlite:///{ledger}")
    try:
        with opened.session() as session:
            records = list(session.scalars(select(AuditRecord).order_by(AuditRecord.id)))
    finally:
        opened.close()
    assert records, "the audit log is empty"
    assert repo.verify_audit_chain(records) is None


def _assert_spool_clean(spool: Path) -> None:
    """No spooled file and no study folder left; pynetdicom temp files in incoming/ only warn."""
    incoming = spool / "incoming"
    leftovers = sorted(
        str(path.relative_to(spool))
        for path in spool.rglob("*")
        if path.is_file()
        if path.parent != incoming and path != spool / ".lock"
    )
    assert leftovers == []
    folders = sorted(p.name for p in spool.iterdir() if p.is_dir() and p != incoming)
    assert folders == []
    if incoming.exists() and any(incoming.iterdir()):
        warnings.warn(
            f"temp files left in {incoming}: {sorted(p.name for p in incoming.iterdir())}",
            stacklevel=1,
        )
