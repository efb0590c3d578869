"""What the benchmark scripts share: running pacsmigrate timed, and the work folder."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

SUBPROCESS_TIMEOUT = 900  # seconds; a hung peer must not hang the benchmark


class BenchError(RuntimeError):
    """A measured run did not do its job (exit code, missing or altered data)."""


def tail(path: Path, lines: int = 15) -> str:
    text = path.read_text(errors="replace").splitlines() if path.exists() else []
    return "\n".join(text[-lines:])


def run_pacsmigrate(
    log: Path, *args: str, env: dict[str, str] | None = None, timeout: float = SUBPROCESS_TIMEOUT
) -> float:
    """Run ``python -m pacsmigrate ARGS``; return its wall time; raise unless exit 0."""
    command = [sys.executable, "-m", "pacsmigrate", *args]
    with log.open("ab") as handle:
        handle.write(f"$ {' '.join(command)}\n".encode())
        handle.flush()
        start = time.perf_counter()
        try:
            code = subprocess.call(
                command,
                stdout=handle,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                env=env,
            )
        except subprocess.TimeoutExpired as exc:  # subprocess.call has killed it
            raise BenchError(
                f"pacsmigrate {' '.join(args)} still running after {timeout:.0f} s"
            ) from exc
        elapsed = time.perf_counter() - start
    if code != 0:
        raise BenchError(f"pacsmigrate {' '.join(args)} exited with {code}:\n{tail(log)}")
    return elapsed


def in_workdir(
    keep: Path | None, prefix: str, run: Callable[[Path], dict[str, Any]], stopped: str
) -> tuple[int, dict[str, Any]]:
    """Run ``run`` in a fresh work folder (``keep`` is kept, a temporary one is removed);
    returns (exit code, result): 0, 1 on a BenchError, 130 on Ctrl-C."""
    workdir = keep or Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    if keep:
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(parents=True)
    try:
        return 0, run(workdir)
    except KeyboardInterrupt:
        print(f"benchmark interrupted; {stopped}", file=sys.stderr)
        return 130, {}
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1, {}
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
