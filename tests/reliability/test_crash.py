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
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import pytest

from pacsmigrate.testing.hospital import GeneratedInstance, generate_hospital
from pacsmigrate.testing.orthanc import free_port, running_orthanc
from tests.conftest import CALLING_AE, Peers, needs_orthanc, run_cli

pytestmark = [needs_orthanc, pytest.mark.orthanc]

DEADLINE = 120.0  # seconds to reach a kill point
POLL = 0.02  # seconds between two looks at the ledger or the target
SEED = 7


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[GeneratedInstance]:
    """A larger hospital than the session one (~160 instances, 30 studies), so a kill lands mid-run."""
    return generate_hospital(tmp_path_factory.mktemp("hospital-crash"), seed=SEED, scale=3)


@pytest.fixture
def crash_peers(tmp_path: Path, corpus: list[GeneratedInstance]) -> Iterator[Peers]:
    """A source Orthanc loaded with ``corpus`` and an empty target, like conftest's ``peers``."""
    scp_port = free_port()
    modalities = {CALLING_AE: ("127.0.0.1", scp_port)}
    with (
        running_orthanc(tmp_path / "source", aet="OLDPACS", modalities=modalities) as source,
        running_orthanc(tmp_path / "target", aet="NEWPACS", modalities=modalities) as target,
    ):
        source.upload_files([item.path for item in corpus])
        yield Peers(source=source, target=target, scp_port=scp_port)


# Reading the ledger (read-only, while the migrating process writes it) -------

def _study_states(ledger: Path) -> dict[str, int]:
    """Studies per state; empty if SQLite is busy right now (the next poll tries again)."""
    try:
        with closing(sqlite3.connect(f"file:{ledger}?mode=ro", uri=True, timeout=1)) as db:
            return dict(db.execute("SELECT state, count(*) FROM studies GROUP BY state").fetchall())
    except sqlite3.OperationalError:
        return {}


def _query(ledger: Path, sql: str) -> list[tuple[object, ...]]:
    with closing(sqlite3.connect(f"file:{ledger}?mode=ro", uri=True)) as db:
        return db.execute(sql).fetchall()


# Kill points ----------------------------------------------------------------

@dataclass(frozen=True)
class KillPoint:
    """A condition on the ledger or the target; ``describe`` says what it waited for."""

    describe: str
    reached: Callable[[], bool]


def _point_transferring(_rng: random.Random, ledger: Path, _peers: Peers, _total: int, _studies: int) -> KillPoint:
    return KillPoint(
        "at least one study 'transferring'",
        lambda: _study_states(ledger).get("transferring", 0) >= 1,
    )


def _point_target_count(rng: random.Random, _ledger: Path, peers: Peers, total: int, _studies: int) -> KillPoint:
    k = rng.randint(math.ceil(0.1 * total), math.floor(0.7 * total))
    return KillPoint(
        f"the target holding at least {k} of {total} instances",
        lambda: int(peers.target.statistics()["CountInstances"]) >= k,
    )


def _point_some_transferred(rng: random.Random, ledger: Path, _peers: Peers, _total: int, studies: int) -> KillPoint:
    j = rng.randint(1, studies // 2)

    def reached() -> bool:
        states = _study_states(ledger)
        transferred = states.get("transferred", 0)
        return j <= transferred < studies

    return KillPoint(f"at least {j} (not all {studies}) studies 'transferred'", reached)


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
    make_point: Callable[..., KillPoint],
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
    point = make_point(rng, ledger, peers, total, studies)
    log = tmp_path / "killed-migrate.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "pacsmigrate", "-C", str(project), "migrate", "--workers", "3"],
            stdout=output, stderr=subprocess.STDOUT,
        )
    try:
        _kill_when(process, point, log)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL, log.read_text(errors="replace")

    again = run_cli("-C", str(project), "migrate")
    assert again.returncode == 0, again.stdout + again.stderr
    verify = run_cli("-C", str(project), "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr

    # the ledger: every study verified, every instance acknowledged and hashed
    states = dict(_query(ledger, "SELECT state, count(*) FROM studies GROUP BY state"))
    assert states == {"verified": studies}, f"killed at: {point.describe}"
    assert _query(ledger, "SELECT count(*) FROM instances") == [(total,)]
    unfinished = _query(
        ledger,
        "SELECT sop_instance_uid, stored_at, store_status, sha256 FROM instances"
        " WHERE stored_at IS NULL OR store_status IS NOT 0 OR sha256 = '' OR sha256 IS NULL",
    )
    assert unfinished == []
    migrate_runs = _query(ledger, "SELECT outcome FROM runs WHERE stage = 'migrate' ORDER BY id")
    assert len(migrate_runs) >= 2
    assert migrate_runs[-1] == ("completed",)

    # the target: each source instance exactly once, nothing else
    assert int(peers.target.statistics()["CountInstances"]) == total
    assert set(peers.target.sop_instance_index()) == {item.sop_instance_uid for item in corpus}

    # the spool: nothing left for verified studies
    spool = project / "spool"
    leftovers = sorted(
        str(path.relative_to(spool))
        for path in spool.rglob("*.dcm")
        if path.parent.name not in ("incoming", "unrouted")
    )
    assert leftovers == []
    study_dirs = [path.name for path in spool.iterdir() if path.is_dir() and path.name not in ("incoming", "unrouted")]
    assert study_dirs == []
