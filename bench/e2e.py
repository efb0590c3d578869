"""End-to-end benchmark: ``pacsmigrate run`` next to DCMTK ``storescu``, as a ratio.

Machines are noisy, so speed is reported as a ratio to a reference measured on
the same machine in the same run. The generated hospital is written once; one
source Orthanc holds it and one target Orthanc receives it, again and again:

* reference: DCMTK ``storescu`` sends the generated files, split round-robin
  into ``--workers`` groups, one ``storescu`` process (one association) per
  group, all in parallel, each file in its own transfer syntax;
* ``pacsmigrate run`` (a fresh project, ``--skip-preflight``), timed end to
  end: process start, inventory, migrate, verify and report;
* ``pacsmigrate migrate`` alone: ``inventory`` first (not timed), then
  ``migrate`` timed (process start included).

After each of them the target must hold exactly the generated SOP Instance
UIDs, each in the transfer syntax of its file; then the target is emptied.
With ``--repeat N`` every side runs N times (interleaved) and the median time
is used. storescu only reads local files, while pacsmigrate also retrieves
every study from the source PACS (C-MOVE), so a ratio near or below 1 is
expected: the ratio is the figure to track over time.

Usage: ``.venv/bin/python bench/e2e.py [--scale 4] [--workers 4] [--repeat 1]
[--json PATH]``. Both Orthanc servers stop on exit, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from _common import SUBPROCESS_TIMEOUT, BenchError, in_workdir, run_pacsmigrate, tail

from pacsmigrate.testing.hospital import GeneratedInstance, generate_hospital
from pacsmigrate.testing.orthanc import (
    OrthancNotInstalled,
    OrthancServer,
    free_port,
    orthanc_binary,
    running_orthanc,
)

CALLING_AE = "PACSMIGRATE"
STORESCU = "storescu"
STORESCU_PROFILE = "Bench"

SIDES = ("storescu", "pacsmigrate run", "pacsmigrate migrate")


@dataclass
class Bench:
    """Everything one measurement needs: the files, both servers, a scratch folder."""

    files: list[GeneratedInstance]
    source: OrthancServer
    target: OrthancServer
    scp_port: int
    workers: int
    workdir: Path
    expected: dict[str, str] = field(init=False)  # SOP Instance UID -> transfer syntax
    inventory_seconds: list[float] = field(default_factory=list)  # informational only
    run_stages: list[dict[str, float]] = field(default_factory=list)  # informational only

    def __post_init__(self) -> None:
        self.expected = {f.sop_instance_uid: f.transfer_syntax_uid for f in self.files}


# --------------------------------------------------------------------------
# checks on the target


def _target_contents(target: OrthancServer) -> dict[str, str]:
    """SOP Instance UID -> transfer syntax of every instance the target holds."""
    held: dict[str, str] = {}
    for orthanc_id in target.instance_ids():
        tags = target.get(f"/instances/{orthanc_id}")["MainDicomTags"]
        response = target.session.get(
            f"{target.url}/instances/{orthanc_id}/metadata/TransferSyntax", timeout=60
        )
        response.raise_for_status()
        held[tags["SOPInstanceUID"]] = response.text.strip()
    return held


def check_target(bench: Bench, label: str) -> None:
    """Raise unless the target holds exactly the generated instances, syntaxes unchanged."""
    count = int(bench.target.statistics()["CountInstances"])
    if count != len(bench.files):
        raise BenchError(f"{label}: target holds {count} instances, expected {len(bench.files)}")
    held = _target_contents(bench.target)
    missing = set(bench.expected) - set(held)
    if missing:
        raise BenchError(f"{label}: {len(missing)} generated instances missing on the target")
    changed = Counter(
        f"{bench.expected[uid]} -> {syntax}"
        for uid, syntax in held.items()
        if bench.expected.get(uid) != syntax
    )
    if changed:
        raise BenchError(f"{label}: transfer syntax changed on the way: {dict(changed)}")


def clear_target(target: OrthancServer) -> None:
    target.delete_all()
    count = int(target.statistics()["CountInstances"])
    if count != 0:
        raise BenchError(f"target still holds {count} instances after clearing it")


# --------------------------------------------------------------------------
# the measured sides


def write_storescu_config(files: list[GeneratedInstance], path: Path) -> Path:
    """A storescu association profile: one context per (SOP class, file syntax) pair.

    By default storescu proposes only uncompressed syntaxes (or one ``-x..``
    choice) and converts, or fails on, anything else. With this profile every
    file goes out in its own transfer syntax, as pacsmigrate sends it.
    """
    syntaxes = sorted({f.transfer_syntax_uid for f in files})
    names = {uid: f"Syntax{i}" for i, uid in enumerate(syntaxes, start=1)}
    pairs = sorted({(f.sop_class_uid, f.transfer_syntax_uid) for f in files})
    lines = ["[[TransferSyntaxes]]"]
    for uid in syntaxes:
        lines += [f"[{names[uid]}]", f"TransferSyntax1 = {uid}"]
    lines += ["[[PresentationContexts]]", "[BenchContexts]"]
    lines += [
        f"PresentationContext{i} = {sop_class}\\{names[syntax]}"
        for i, (sop_class, syntax) in enumerate(pairs, start=1)
    ]
    lines += ["[[Profiles]]", f"[{STORESCU_PROFILE}]", "PresentationContexts = BenchContexts"]
    path.write_text("\n".join(lines) + "\n")
    return path


def time_storescu(bench: Bench, rep: int) -> float:
    """Seconds for ``workers`` parallel storescu processes to send every file."""
    groups = [bench.files[i :: bench.workers] for i in range(bench.workers)]
    groups = [group for group in groups if group]
    config = write_storescu_config(bench.files, bench.workdir / "storescu.cfg")
    logs = [bench.workdir / f"storescu-{rep}-{i}.log" for i in range(len(groups))]
    handles = [log.open("wb") for log in logs]
    processes: list[subprocess.Popen[bytes]] = []
    try:
        start = time.perf_counter()
        processes.extend(
            subprocess.Popen(
                [
                    STORESCU,
                    "-aet",
                    CALLING_AE,
                    "-aec",
                    bench.target.aet,
                    "--config-file",
                    str(config),
                    STORESCU_PROFILE,
                    "127.0.0.1",
                    str(bench.target.dicom_port),
                    *(str(f.path) for f in group),
                ],
                stdout=handle,
                stderr=subprocess.STDOUT,
            )
            for group, handle in zip(groups, handles, strict=True)
        )
        codes = [process.wait(timeout=SUBPROCESS_TIMEOUT) for process in processes]
        elapsed = time.perf_counter() - start
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"storescu still running after {SUBPROCESS_TIMEOUT} s") from exc
    finally:
        for process in processes:  # only left running on a timeout or Ctrl-C
            if process.poll() is None:
                process.kill()
                process.wait()
        for handle in handles:
            handle.close()
    for code, log in zip(codes, logs, strict=True):
        if code != 0:
            raise BenchError(f"storescu exited with {code}:\n{tail(log)}")
    return elapsed


def _new_project(bench: Bench, name: str, log: Path) -> Path:
    project = bench.workdir / name
    shutil.rmtree(project, ignore_errors=True)
    run_pacsmigrate(
        log,
        "init",
        str(project),
        "--source",
        f"{bench.source.dimse_url}?calling={CALLING_AE}",
        "--target",
        f"{bench.target.dimse_url}?calling={CALLING_AE}",
        "--ae-title",
        CALLING_AE,
        "--port",
        str(bench.scp_port),
    )
    return project


def time_run(bench: Bench, rep: int) -> float:
    """Seconds for ``pacsmigrate run`` (inventory, migrate, verify, report) in a new project."""
    log = bench.workdir / f"run-{rep}.log"
    project = _new_project(bench, f"project-run-{rep}", log)
    seconds = run_pacsmigrate(
        log,
        "-C",
        str(project),
        "run",
        "--workers",
        str(bench.workers),
        "--skip-preflight",
    )
    bench.run_stages.append(_stage_seconds(project / "reports" / "report.json"))
    return seconds


def _stage_seconds(report: Path) -> dict[str, float]:
    """Seconds per stage from the report's ``runs`` (whole seconds); empty if unreadable."""
    try:
        runs = json.loads(report.read_text())["runs"]
        return {
            str(run["stage"]): (
                datetime.fromisoformat(run["finished_at"])
                - datetime.fromisoformat(run["started_at"])
            ).total_seconds()
            for run in reversed(runs)  # the report lists the newest first
            if run.get("started_at") and run.get("finished_at")
        }
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def time_migrate(bench: Bench, rep: int) -> float:
    """Seconds for ``pacsmigrate migrate`` alone, after an untimed ``inventory``."""
    log = bench.workdir / f"migrate-{rep}.log"
    project = _new_project(bench, f"project-migrate-{rep}", log)
    bench.inventory_seconds.append(run_pacsmigrate(log, "-C", str(project), "inventory"))
    return run_pacsmigrate(log, "-C", str(project), "migrate", "--workers", str(bench.workers))


MEASURES: dict[str, Callable[[Bench, int], float]] = {
    "storescu": time_storescu,
    "pacsmigrate run": time_run,
    "pacsmigrate migrate": time_migrate,
}


def measure(bench: Bench, repeat: int) -> dict[str, list[float]]:
    """Every side ``repeat`` times, interleaved; the target is checked and emptied after each."""
    times: dict[str, list[float]] = {side: [] for side in SIDES}
    for rep in range(repeat):
        for side in SIDES:
            seconds = MEASURES[side](bench, rep)
            check_target(bench, side)
            clear_target(bench.target)
            times[side].append(seconds)
            rate = len(bench.files) / seconds
            note = ""
            if side == "pacsmigrate run" and bench.run_stages and bench.run_stages[-1]:
                note = (
                    "  (report: "
                    + ", ".join(
                        f"{stage} {value:.0f} s" for stage, value in bench.run_stages[-1].items()
                    )
                    + ")"
                )
            print(
                f"  [{rep + 1}/{repeat}] {side:<20} {seconds:7.2f} s  {rate:7.1f} inst/s{note}",
                flush=True,
            )
    return times


# --------------------------------------------------------------------------
# report


def summarise(times: dict[str, list[float]], instances: int, workers: int) -> dict[str, Any]:
    median = {side: statistics.median(values) for side, values in times.items()}
    rate = {side: instances / seconds for side, seconds in median.items()}
    reference = rate["storescu"]
    return {
        "instances": instances,
        "workers": workers,
        "repeat": len(times["storescu"]),
        "seconds": times,
        "median_seconds": median,
        "instances_per_second": rate,
        "ratio_to_storescu": {
            "run": rate["pacsmigrate run"] / reference,
            "migrate": rate["pacsmigrate migrate"] / reference,
        },
        "machine": {"python": platform.python_version(), "node": platform.machine()},
    }


def print_table(result: dict[str, Any]) -> None:
    rate = result["instances_per_second"]
    median = result["median_seconds"]
    ratio = result["ratio_to_storescu"]
    rows = [
        ("instances", f"{result['instances']}"),
        ("workers (parallel associations / studies in flight)", f"{result['workers']}"),
        ("repetitions (median used)", f"{result['repeat']}"),
        ("storescu inst/s", f"{rate['storescu']:.1f}  ({median['storescu']:.2f} s)"),
        (
            "pacsmigrate run inst/s (end to end)",
            f"{rate['pacsmigrate run']:.1f}  ({median['pacsmigrate run']:.2f} s)",
        ),
        (
            "pacsmigrate migrate inst/s (migrate alone)",
            f"{rate['pacsmigrate migrate']:.1f}  ({median['pacsmigrate migrate']:.2f} s)",
        ),
        (
            "(pacsmigrate process start, in both figures)",
            f"{result['process_start_seconds']:.2f} s",
        ),
        (
            "(pacsmigrate inventory alone, in run, not in migrate)",
            f"{result['inventory_median_seconds']:.2f} s",
        ),
        ("ratio run / storescu", f"{ratio['run']:.2f}"),
        ("ratio migrate / storescu", f"{ratio['migrate']:.2f}"),
    ]
    width = max(len(name) for name, _ in rows)
    print()
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print()
    print(
        "run = one `pacsmigrate run --skip-preflight` process end to end: interpreter start,\n"
        "inventory (C-FIND), migrate (C-MOVE from the source, C-STORE to the target),\n"
        "verify and report. migrate = the `pacsmigrate migrate` process alone, after an\n"
        "untimed inventory. storescu only sends local files, while pacsmigrate also\n"
        "retrieves every study from the source PACS (C-MOVE), so a ratio near or below 1\n"
        "is expected; the ratio is the figure to track over time."
    )


# --------------------------------------------------------------------------
# main


def _check_tools() -> str | None:
    try:
        orthanc_binary()
    except OrthancNotInstalled as exc:
        return str(exc)
    if shutil.which(STORESCU) is None:
        return "DCMTK storescu is not installed: run 'make deps' (Debian package dcmtk)"
    return None


def run_bench(workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    files = generate_hospital(workdir / "hospital", seed=0, scale=args.scale)
    syntaxes = Counter(f.transfer_syntax_uid for f in files)
    print(
        f"generated {len(files)} instances (scale {args.scale}): "
        + ", ".join(f"{n} x {uid}" for uid, n in sorted(syntaxes.items()))
    )
    scp_port = free_port()
    peers = {CALLING_AE: ("127.0.0.1", scp_port)}
    with (
        running_orthanc(workdir / "source", aet="OLDPACS", modalities=peers) as source,
        running_orthanc(workdir / "target", aet="NEWPACS", modalities=peers) as target,
    ):
        source.upload_files([f.path for f in files])
        loaded = int(source.statistics()["CountInstances"])
        if loaded != len(files):
            raise BenchError(f"source holds {loaded} instances, expected {len(files)}")
        clear_target(target)
        print(
            f"source {source.dimse_url} loaded; target {target.dimse_url}; "
            f"workers {args.workers}; repeat {args.repeat}",
            flush=True,
        )
        bench = Bench(
            files=files,
            source=source,
            target=target,
            scp_port=scp_port,
            workers=args.workers,
            workdir=workdir,
        )
        times = measure(bench, args.repeat)
        inventory = statistics.median(bench.inventory_seconds)
        run_stages = bench.run_stages
    # the fixed cost inside both pacsmigrate figures: starting Python and importing
    startup = run_pacsmigrate(workdir / "version.log", "version")
    result = summarise(times, len(files), args.workers)
    result["scale"] = args.scale
    result["process_start_seconds"] = startup
    result["inventory_median_seconds"] = inventory
    result["run_stage_seconds"] = run_stages
    result["total_seconds"] = time.perf_counter() - started
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="pacsmigrate end-to-end throughput as a ratio to DCMTK storescu"
    )
    parser.add_argument(
        "--scale", type=int, default=4, help="size of the generated hospital (4 = 212 instances)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=4,
        help="storescu associations in parallel = pacsmigrate --workers",
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="run each side this many times and report the median"
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here")
    parser.add_argument(
        "--keep",
        type=Path,
        metavar="DIR",
        help="work in DIR and keep it (logs, projects) instead of a temp folder",
    )
    args = parser.parse_args(argv)
    if args.scale < 1 or args.workers < 1 or args.repeat < 1:
        parser.error("--scale, --workers and --repeat must be at least 1")
    problem = _check_tools()
    if problem:
        print(problem, file=sys.stderr)
        return 2
    code, result = in_workdir(
        args.keep,
        "pacsmigrate-bench-",
        lambda workdir: run_bench(workdir, args),
        "both Orthanc servers were stopped",
    )
    if code:
        return code
    print_table(result)
    print(f"(whole benchmark {result['total_seconds']:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
