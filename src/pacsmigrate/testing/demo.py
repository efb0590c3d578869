"""``make demo``: a whole migration between two temporary Orthanc servers.

Starts a source and a target Orthanc on free loopback ports, fills the source
with the generated hospital, writes a project with ``pacsmigrate init`` and
runs ``pacsmigrate run``. Both servers stop when it ends, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from pacsmigrate.testing.hospital import generate_hospital
from pacsmigrate.testing.orthanc import free_port, running_orthanc

__all__ = ["main"]

CALLING_AE = "PACSMIGRATE"


def _pacsmigrate(*args: str) -> int:
    command = [sys.executable, "-m", "pacsmigrate", *args]
    return subprocess.call(command)


def run_demo(workdir: Path, *, scale: int, workers: int) -> int:
    project = workdir / "project"
    scp_port = free_port()
    files = generate_hospital(workdir / "hospital", seed=0, scale=scale)
    peers = {CALLING_AE: ("127.0.0.1", scp_port)}
    with (
        running_orthanc(workdir / "source", aet="OLDPACS", modalities=peers) as source,
        running_orthanc(workdir / "target", aet="NEWPACS", modalities=peers) as target,
    ):
        print(f"source Orthanc {source.dimse_url} (REST {source.url})")
        print(f"target Orthanc {target.dimse_url} (REST {target.url})")
        source.upload_files([f.path for f in files])
        print(f"loaded {len(files)} generated instances into the source")
        code = _pacsmigrate(
            "init", str(project),
            "--source", f"{source.dimse_url}?calling={CALLING_AE}",
            "--target", f"{target.dimse_url}?calling={CALLING_AE}",
            "--ae-title", CALLING_AE, "--port", str(scp_port),
        )
        if code == 0:
            code = _pacsmigrate("-C", str(project), "run", "--workers", str(workers))
        held = len(target.instance_ids())
        print(f"target Orthanc now holds {held} of {len(files)} instances")
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=int, default=2, help="size of the generated hospital")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--keep", type=Path, help="keep the project in this folder")
    args = parser.parse_args(argv)
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="pacsmigrate-demo-"))
    if args.keep and workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        code = run_demo(workdir, scale=args.scale, workers=args.workers)
        if args.keep:
            print(f"project kept in {workdir / 'project'}")
        return code
    except KeyboardInterrupt:
        print("demo interrupted; both Orthanc servers were stopped", file=sys.stderr)
        return 130
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
