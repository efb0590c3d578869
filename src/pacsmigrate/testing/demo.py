"""``make demo``: a whole migration between two temporary Orthanc servers.

Starts a source and a target Orthanc on free loopback ports, fills the source
with the generated hospital, writes a project (``./demo-project``) with
``pacsmigrate init`` and runs ``pacsmigrate run``. Both servers and their
storage go away when it ends, also on Ctrl-C; the project (ledger, reports)
stays for a look.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from pacsmigrate.testing.hospital import generate_hospital
from pacsmigrate.testing.orthanc import running_pair

__all__ = ["main"]

CALLING_AE = "PACSMIGRATE"


def _pacsmigrate(*args: str) -> int:
    """Run one pacsmigrate command; if the demo is stopped, stop it too."""
    with subprocess.Popen([sys.executable, "-m", "pacsmigrate", *args]) as process:
        try:
            return process.wait()
        except BaseException:
            process.terminate()
            raise


def run_demo(workdir: Path, project: Path, *, scale: int, workers: int) -> int:
    files = generate_hospital(workdir / "hospital", seed=0, scale=scale)
    with running_pair(workdir, [f.path for f in files], calling_ae=CALLING_AE) as pair:
        source, target, scp_port = pair.source, pair.target, pair.scp_port
        print(f"source Orthanc {source.dimse_url} (REST {source.url})")
        print(f"target Orthanc {target.dimse_url} (REST {target.url})")
        print(f"loaded {len(files)} generated instances into the source")
        code = _pacsmigrate(
            "init",
            str(project),
            "--source",
            f"{source.dimse_url}?calling={CALLING_AE}",
            "--target",
            f"{target.dimse_url}?calling={CALLING_AE}",
            "--ae-title",
            CALLING_AE,
            "--port",
            str(scp_port),
        )
        if code == 0:
            code = _pacsmigrate("-C", str(project), "run", "--workers", str(workers))
        held = len(target.instance_ids())
        print(f"target Orthanc now holds {held} of {len(files)} instances")
    return code


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # runs the finally blocks that stop both servers


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=int, default=2, help="size of the generated hospital")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument(
        "--project",
        type=Path,
        default=Path("demo-project"),
        help="project folder to (re)create; it keeps the ledger and the reports",
    )
    args = parser.parse_args(argv)
    if args.project.exists():
        shutil.rmtree(args.project)
    workdir = Path(tempfile.mkdtemp(prefix="pacsmigrate-demo-"))
    try:
        code = run_demo(workdir, args.project.resolve(), scale=args.scale, workers=args.workers)
        print(f"project (ledger, reports) kept in {args.project}")
        return code
    except KeyboardInterrupt:
        print("demo interrupted; both Orthanc servers were stopped", file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
