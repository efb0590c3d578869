"""Inventory benchmark: ``pacsmigrate inventory`` next to plain DCMTK, as ratios.

Machines are noisy, so speed is reported as a ratio to a reference measured on
the same machine in the same run, and with ``--repeat N`` every side runs N
times (interleaved) and the medians are used. Two parts (``--part``):

* ``pacs``: ``--studies`` small generated studies (one series of one or two
  8x8 instances each, StudyDate spread over three years, five modalities) are
  loaded into one Orthanc (not timed). Then, timed:

  - ours: ``pacsmigrate -C PROJECT inventory`` as a subprocess, a fresh
    project each time (process start included);
  - reference: the DCMTK loop a PACS admin would script, run like
    ``xargs -P PARALLEL``: one ``findscu`` STUDY query per day of the three
    years, then per study found one job that runs a SERIES ``findscu`` and,
    per series found, an IMAGE ``findscu``. Each query asks for the same
    attributes as ours does at that level.

  Both must find exactly the generated studies and instances.

* ``folder``: ``--files`` generated files (two to five per study, nested
  folders) are written (not timed). Then, timed: ours, ``pacsmigrate
  inventory`` on ``file:///...``, its RSS sampled every 0.2 s; the reference,
  ``find DIR -type f -print0 | xargs -0 -n 256 -P PARALLEL dcmdump -q +P
  0020,000d``; and ours again on a tenth of the files, to compare peak RSS
  at two sizes.

Usage: ``.venv/bin/python bench/inventory.py [--part pacs|folder|both]
[--studies 10000] [--files 100000] [--repeat 1] [--parallel 4] [--quick]
[--find-cap N] [--json PATH] [--keep DIR]``. Orthanc stops and the temp
folder is removed on exit, also on Ctrl-C. Not part of ``make test``.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import os
import platform
import random
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, TypeVar

import requests
from _common import BenchError, in_workdir, run_pacsmigrate, tail
from pydicom import dcmwrite
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_ROOT_UID, ExplicitVRLittleEndian

from pacsmigrate.testing.orthanc import (
    OrthancNotInstalled,
    OrthancServer,
    free_port,
    orthanc_binary,
    running_orthanc,
)

CALLING_AE = "PACSMIGRATE"
SOURCE_AET = "OLDPACS"
SUBPROCESS_TIMEOUT = 3600  # seconds for one pacsmigrate run or the dcmdump reference
FINDSCU_TIMEOUT = 120  # seconds for one findscu process
RSS_INTERVAL = 0.2  # seconds between two RSS samples
UPLOAD_THREADS = 8
FIRST_DAY = date(2021, 1, 1)
DAYS = 3 * 365 + 1  # StudyDate spread over three years
MODALITIES = ("CT", "MR", "CR", "US", "DX")
SURNAMES = ("MUELLER", "SMITH", "GARCIA", "ROSSI", "DUBOIS", "NOWAK", "JANSEN", "SILVA")
GIVEN = ("ANNA", "JOHN", "MARIA", "PETER", "LENA", "OMAR", "SOFIA", "KARL", "EVA", "LUIS")
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
UID_ROOT = f"{PYDICOM_ROOT_UID}77"  # pydicom's root: these UIDs are never real
_PROGRESS = re.compile(r"inventory: (\d+) files read")
_T = TypeVar("_T")
_R = TypeVar("_R")

# The attributes ours asks for at each level (inventory/crawl.py, slicing.py);
# the reference asks for the same ones.
STUDY_KEYS = (
    "StudyInstanceUID",
    "PatientID",
    "PatientName",
    "PatientBirthDate",
    "AccessionNumber",
    "ModalitiesInStudy",
    "StudyDescription",
    "NumberOfStudyRelatedInstances",
)
SERIES_KEYS = ("SeriesInstanceUID", "Modality", "SeriesNumber", "SeriesDescription")
IMAGE_KEYS = ("SOPInstanceUID", "SOPClassUID", "InstanceNumber")
TAGS = {
    "StudyInstanceUID": "0020,000d",
    "SeriesInstanceUID": "0020,000e",
    "SOPInstanceUID": "0008,0018",
}


# --------------------------------------------------------------------------
# generated studies


@dataclass(frozen=True)
class StudySpec:
    """One generated study; every value of its files derives from these fields."""

    root: str  # UID root of this part
    index: int
    study_date: str
    modality: str
    patient: int
    series: tuple[int, ...]  # instances per series
    bucket: int = 0  # top folder (folder part): bucket 0 holds about a tenth of the files

    @property
    def study_uid(self) -> str:
        return f"{self.root}.1.{self.index}"

    def series_uid(self, series: int) -> str:
        return f"{self.root}.2.{self.index}.{series + 1}"

    def sop_uid(self, series: int, number: int) -> str:
        return f"{self.root}.3.{self.index}.{series + 1}.{number + 1}"

    def sop_uids(self) -> Iterator[str]:
        for series, count in enumerate(self.series):
            for number in range(count):
                yield self.sop_uid(series, number)

    @property
    def instances(self) -> int:
        return sum(self.series)

    def path(self, root: Path, series: int, number: int) -> Path:
        return (
            root
            / f"b{self.bucket}"
            / f"PAT{self.patient:06d}"
            / f"ST{self.index:07d}"
            / f"SE{series + 1}"
            / f"IM{number + 1:03d}.dcm"
        )


def _study_date(rng: random.Random) -> str:
    return (FIRST_DAY + timedelta(days=rng.randrange(DAYS))).strftime("%Y%m%d")


def plan_pacs(studies: int, seed: int = 0) -> list[StudySpec]:
    """``studies`` studies of one series with one or two instances each."""
    rng = random.Random(seed)
    patients = max(1, studies // 3)
    return [
        StudySpec(
            root=f"{UID_ROOT}.1",
            index=index,
            study_date=_study_date(rng),
            modality=rng.choice(MODALITIES),
            patient=rng.randrange(patients),
            series=(rng.choice((1, 2)),),
        )
        for index in range(studies)
    ]


def plan_folder(files: int, seed: int = 0) -> list[StudySpec]:
    """Studies of two to five instances (one or two series), ``files`` files in all."""
    rng = random.Random(seed)
    patients = max(1, files // 10)
    specs: list[StudySpec] = []
    written = 0
    while written < files:
        count = min(rng.randint(2, 5), files - written)
        series = (count // 2, count - count // 2) if count >= 3 and rng.random() < 0.5 else (count,)
        specs.append(
            StudySpec(
                root=f"{UID_ROOT}.2",
                index=len(specs),
                study_date=_study_date(rng),
                modality=rng.choice(MODALITIES),
                patient=rng.randrange(patients),
                series=series,
                bucket=min(9, written * 10 // files),
            )
        )
        written += count
    return specs


@functools.cache
def _template() -> Dataset:
    """An 8x8 secondary capture image; each file changes UIDs, patient, date."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SECONDARY_CAPTURE
    meta.MediaStorageSOPInstanceUID = f"{UID_ROOT}.9"
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = SECONDARY_CAPTURE
    ds.ConversionType = "WSD"
    ds.PatientBirthDate = "19600101"
    ds.PatientSex = "O"
    ds.StudyTime = "101500"
    ds.ReferringPhysicianName = ""
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.Rows = 8
    ds.Columns = 8
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = bytes(range(64))
    return ds


def _datasets(spec: StudySpec) -> Iterator[tuple[int, int, Dataset]]:
    """(series, number, data set) of every file of ``spec``; one template, changed in place."""
    ds = _template()
    ds.PatientID = f"PAT{spec.patient:06d}"
    surname = SURNAMES[spec.patient % len(SURNAMES)]
    ds.PatientName = f"{surname}^{GIVEN[spec.patient // len(SURNAMES) % len(GIVEN)]}"
    ds.PatientBirthDate = f"{1930 + spec.patient % 70}0{1 + spec.patient % 9}15"
    ds.StudyInstanceUID = spec.study_uid
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = spec.study_date
    ds.AccessionNumber = f"ACC{spec.index:08d}"
    ds.StudyDescription = f"{spec.modality} generated study"
    ds.Modality = spec.modality
    for series, count in enumerate(spec.series):
        ds.SeriesInstanceUID = spec.series_uid(series)
        ds.SeriesNumber = series + 1
        ds.SeriesDescription = f"{spec.modality} series {series + 1}"
        for number in range(count):
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = spec.sop_uid(
                series, number
            )
            ds.InstanceNumber = number + 1
            yield series, number, ds


def _encode_chunk(specs: list[StudySpec]) -> list[bytes]:
    """Part 10 bytes of every file of ``specs`` (runs in a worker process)."""
    blobs = []
    for _series, _number, ds in (item for spec in specs for item in _datasets(spec)):
        buffer = io.BytesIO()
        dcmwrite(buffer, ds, enforce_file_format=True)
        blobs.append(buffer.getvalue())
    return blobs


def _write_chunk(root: str, specs: list[StudySpec]) -> int:
    """Write every file of ``specs`` under ``root`` (runs in a worker process)."""
    written = 0
    for spec in specs:
        for series, number, ds in _datasets(spec):
            path = spec.path(Path(root), series, number)
            path.parent.mkdir(parents=True, exist_ok=True)
            dcmwrite(path, ds, enforce_file_format=True)
            written += 1
    return written


def _chunks(items: list[_T], size: int) -> list[list[_T]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _ignore_sigint() -> None:
    """In generator processes: Ctrl-C is the parent's to handle (it cancels the rest)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _generators() -> ProcessPoolExecutor:
    return ProcessPoolExecutor(max(1, os.cpu_count() or 1), initializer=_ignore_sigint)


def write_folder(root: Path, specs: list[StudySpec]) -> int:
    """Write the folder part's files, in parallel processes; returns how many."""
    with _generators() as pool:
        try:
            return sum(pool.map(functools.partial(_write_chunk, str(root)), _chunks(specs, 500)))
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise


# --------------------------------------------------------------------------
# loading Orthanc (not timed)

_local = threading.local()


def _post(url: str, blob: bytes) -> None:
    session = getattr(_local, "session", None)
    if session is None:
        session = _local.session = requests.Session()
    response = session.post(f"{url}/instances", data=blob, timeout=120)
    response.raise_for_status()
    status = response.json().get("Status")
    if status not in ("Success", "AlreadyStored"):
        raise BenchError(f"Orthanc did not store a generated instance: {status}")


def load_orthanc(server: OrthancServer, specs: list[StudySpec]) -> None:
    """Encode in worker processes while threads POST to /instances; check the counts."""
    with _generators() as encoders, ThreadPoolExecutor(UPLOAD_THREADS) as uploaders:
        pending: list[Future[None]] = []
        try:
            for blobs in encoders.map(_encode_chunk, _chunks(specs, 200)):
                pending.extend(uploaders.submit(_post, server.url, blob) for blob in blobs)
            for future in pending:
                future.result()
        except BaseException:
            encoders.shutdown(wait=True, cancel_futures=True)
            uploaders.shutdown(wait=True, cancel_futures=True)
            raise
    stats = server.statistics()
    expected = (len(specs), sum(spec.instances for spec in specs))
    held = (int(stats["CountStudies"]), int(stats["CountInstances"]))
    if held != expected:
        raise BenchError(f"Orthanc holds {held} (studies, instances), expected {expected}")


# --------------------------------------------------------------------------
# running processes


def _env(find_cap: int | None) -> dict[str, str]:
    """Our environment without PACSMIGRATE_* settings; ``find_cap`` set if given."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PACSMIGRATE_")}
    if find_cap is not None:
        env["PACSMIGRATE_INVENTORY_FIND_CAP"] = str(find_cap)
    return env


def _pacsmigrate(log: Path, *args: str, env: dict[str, str] | None = None) -> float:
    return run_pacsmigrate(log, *args, env=env or _env(None), timeout=SUBPROCESS_TIMEOUT)


def _new_project(workdir: Path, name: str, source: str, log: Path) -> Path:
    project = workdir / name
    shutil.rmtree(project, ignore_errors=True)
    _pacsmigrate(log, "init", str(project), "--source", source, "--port", str(free_port()))
    return project


@dataclass
class Ledger:
    """What one inventory run left in its project's ledger."""

    summary: dict[str, Any]
    studies: set[str]
    instances: set[str]


def read_ledger(project: Path) -> Ledger:
    with sqlite3.connect(project / "ledger.sqlite") as db:
        row = db.execute(
            "SELECT summary FROM runs WHERE stage = 'inventory' ORDER BY id DESC LIMIT 1"
        ).fetchone()
        studies = {uid for (uid,) in db.execute("SELECT study_uid FROM studies")}
        instances = {uid for (uid,) in db.execute("SELECT sop_instance_uid FROM instances")}
    db.close()
    return Ledger(json.loads(row[0]) if row else {}, studies, instances)


class Jobs:
    """Jobs run from ``parallel`` threads, like ``xargs -P``; a failure or Ctrl-C
    cancels what has not started and kills the processes still running."""

    def __init__(self, parallel: int) -> None:
        self.pool = ThreadPoolExecutor(parallel)
        self.live: set[subprocess.Popen[str]] = set()
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.processes = 0

    def __enter__(self) -> Jobs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.pool.shutdown(wait=True, cancel_futures=True)

    def stop(self) -> None:
        self.stopped.set()
        with self.lock:
            for process in self.live:
                if process.poll() is None:
                    process.kill()

    def run(self, command: list[str]) -> str:
        """Run one process; return stdout and stderr; raise unless it exits 0."""
        if self.stopped.is_set():
            raise BenchError("stopped")
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        with self.lock:
            self.live.add(process)
            self.processes += 1
        try:
            output, _ = process.communicate(timeout=FINDSCU_TIMEOUT)
        except subprocess.TimeoutExpired as exc:
            process.kill()
            process.communicate()
            raise BenchError(f"{command[0]} still running after {FINDSCU_TIMEOUT} s") from exc
        finally:
            with self.lock:
                self.live.discard(process)
        if process.returncode != 0 or re.search(r"^[EF]: ", output, re.MULTILINE):
            raise BenchError(
                f"{' '.join(command)} exited with {process.returncode}:\n{output[-1500:]}"
            )
        return output

    def map(self, function: Callable[[_T], _R], items: Iterable[_T]) -> list[_R]:
        futures = [self.pool.submit(function, item) for item in items]
        try:
            return [future.result() for future in futures]
        except BaseException:
            self.stop()
            for future in futures:
                future.cancel()
            raise


# --------------------------------------------------------------------------
# part 1: PACS inventory


@dataclass
class PacsBench:
    server: OrthancServer
    specs: list[StudySpec]
    workdir: Path
    parallel: int
    find_cap: int
    findscu: str
    days: list[str] = field(init=False)
    studies: set[str] = field(init=False)
    instances: set[str] = field(init=False)
    problems: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.days = [(FIRST_DAY + timedelta(days=n)).strftime("%Y%m%d") for n in range(DAYS)]
        self.studies = {spec.study_uid for spec in self.specs}
        self.instances = {uid for spec in self.specs for uid in spec.sop_uids()}

    @property
    def source_url(self) -> str:
        return f"{self.server.dimse_url}?calling={CALLING_AE}"

    def check(self, label: str, studies: set[str], instances: set[str]) -> bool:
        """Record (and print, loudly) any difference from the generated UIDs."""
        ok = True
        for kind, found, expected in (
            ("studies", studies, self.studies),
            ("instances", instances, self.instances),
        ):
            if found != expected:
                ok = False
                problem = (
                    f"MISMATCH {label}: found {len(found)} {kind}, generated {len(expected)}"
                    f" ({len(expected - found)} missing, {len(found - expected)} unexpected)"
                )
                self.problems.append(problem)
                print(f"!!! {problem}", file=sys.stderr, flush=True)
        return ok


@dataclass
class Side:
    seconds: list[float] = field(default_factory=list)
    queries: list[int] = field(default_factory=list)
    details: list[dict[str, Any]] = field(default_factory=list)


def ours_pacs(bench: PacsBench, label: str, find_cap: int | None) -> tuple[float, Ledger]:
    """One timed ``pacsmigrate inventory`` in a fresh project (``init`` not timed)."""
    log = bench.workdir / f"{label}.log"
    project = _new_project(bench.workdir, label, bench.source_url, log)
    seconds = _pacsmigrate(log, "-C", str(project), "inventory", env=_env(find_cap))
    return seconds, read_ledger(project)


def _our_queries(summary: dict[str, Any]) -> dict[str, int]:
    """C-FINDs ours issued: its study queries, then (a fresh project: no study is
    unchanged) one SERIES query per study and one IMAGE query per series."""
    return {
        "study": int(summary.get("queries", 0)),
        "series": int(summary.get("studies", 0)),
        "image": int(summary.get("series", 0)),
    }


def _uids(output: str, keyword: str) -> list[str]:
    tag = re.escape(TAGS[keyword])
    return [uid.strip("\x00 ") for uid in re.findall(rf"\({tag}\) UI \[([^\]]*)\]", output)]


def _findscu_command(bench: PacsBench, level: str, keys: dict[str, str]) -> list[str]:
    command = [
        bench.findscu,
        "-S",
        "-aet",
        CALLING_AE,
        "-aec",
        SOURCE_AET,
        "127.0.0.1",
        str(bench.server.dicom_port),
        "-k",
        f"QueryRetrieveLevel={level}",
    ]
    for keyword, value in keys.items():
        command += ["-k", f"{keyword}={value}" if value else keyword]
    return command


def reference_pacs(bench: PacsBench) -> tuple[float, dict[str, int], set[str], set[str]]:
    """The findscu loop; returns seconds, queries per level, studies and instances found."""
    study_keys = dict.fromkeys(STUDY_KEYS, "")
    series_keys = dict.fromkeys(SERIES_KEYS, "")
    image_keys = dict.fromkeys(IMAGE_KEYS, "")
    with Jobs(bench.parallel) as jobs:

        def day(value: str) -> list[str]:
            output = jobs.run(_findscu_command(bench, "STUDY", {"StudyDate": value, **study_keys}))
            return _uids(output, "StudyInstanceUID")

        def study(study_uid: str) -> tuple[int, list[str]]:
            keys = {"StudyInstanceUID": study_uid, **series_keys}
            series = _uids(jobs.run(_findscu_command(bench, "SERIES", keys)), "SeriesInstanceUID")
            found: list[str] = []
            for series_uid in series:
                keys = {"StudyInstanceUID": study_uid, "SeriesInstanceUID": series_uid}
                output = jobs.run(_findscu_command(bench, "IMAGE", {**keys, **image_keys}))
                found.extend(_uids(output, "SOPInstanceUID"))
            return len(series), found

        start = time.perf_counter()
        studies = [uid for answer in jobs.map(day, bench.days) for uid in answer]
        per_study = jobs.map(study, list(dict.fromkeys(studies)))
        seconds = time.perf_counter() - start
    series = sum(count for count, _ in per_study)
    queries = {"study": len(bench.days), "series": len(set(studies)), "image": series}
    if sum(queries.values()) != jobs.processes:
        raise BenchError(f"findscu ran {jobs.processes} times, expected {queries}")
    instances = [uid for _, found in per_study for uid in found]
    if len(studies) != len(set(studies)) or len(instances) != len(set(instances)):
        bench.problems.append("reference: the same UID was answered twice")
    return seconds, queries, set(studies), set(instances)


def findscu_floor(bench: PacsBench) -> float:
    """Median seconds of one findscu process whose query matches nothing."""
    with Jobs(1) as jobs:
        times = []
        for _ in range(5):
            start = time.perf_counter()
            jobs.run(
                _findscu_command(bench, "STUDY", {"StudyDate": "18000101", "StudyInstanceUID": ""})
            )
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def _queries_text(queries: dict[str, int]) -> str:
    return (
        f"{sum(queries.values())} C-FIND: {queries['study']} study,"
        f" {queries['series']} series, {queries['image']} image"
    )


def measure_pacs(bench: PacsBench, repeat: int) -> dict[str, Any]:
    ours, reference = Side(), Side()
    studies, instances = len(bench.studies), len(bench.instances)
    unset: dict[str, Any] | None = None
    cap = bench.find_cap or None
    for rep in range(repeat):
        seconds, ledger = ours_pacs(bench, f"pacs-project-{rep}", cap)
        queries = _our_queries(ledger.summary)
        ours.seconds.append(seconds)
        ours.queries.append(sum(queries.values()))
        ours.details.append({"summary": ledger.summary, "queries": queries})
        if cap is None:
            unset = unset or ledger.summary
        bench.check(f"ours, run {rep + 1}", ledger.studies, ledger.instances)
        print(
            f"  [{rep + 1}/{repeat}] ours       {seconds:8.2f} s  {studies / seconds:8.1f}"
            f" studies/s  {instances / seconds:8.1f} inst/s  ({_queries_text(queries)};"
            f" {ledger.summary.get('slices_split', 0)} study answers split)",
            flush=True,
        )
        seconds, queries, found_studies, found_instances = reference_pacs(bench)
        reference.seconds.append(seconds)
        reference.queries.append(sum(queries.values()))
        reference.details.append({"queries": queries})
        bench.check(f"reference, run {rep + 1}", found_studies, found_instances)
        print(
            f"  [{rep + 1}/{repeat}] reference  {seconds:8.2f} s  {studies / seconds:8.1f}"
            f" studies/s  {instances / seconds:8.1f} inst/s  ({_queries_text(queries)};"
            f" findscu processes, {bench.parallel} at a time)",
            flush=True,
        )
    if unset is None:  # the timed runs had a find_cap: one more run, untimed, without it
        seconds, ledger = ours_pacs(bench, "pacs-project-unset", None)
        bench.check("ours, find_cap unset", ledger.studies, ledger.instances)
        unset = dict(ledger.summary, seconds=seconds)
    median = {
        "ours": statistics.median(ours.seconds),
        "reference": statistics.median(reference.seconds),
    }
    return {
        "studies": studies,
        "instances": instances,
        "series": sum(len(spec.series) for spec in bench.specs),
        "repeat": repeat,
        "parallel": bench.parallel,
        "find_cap": bench.find_cap,
        "seconds": {"ours": ours.seconds, "reference": reference.seconds},
        "median_seconds": median,
        "studies_per_second": {side: studies / value for side, value in median.items()},
        "instances_per_second": {side: instances / value for side, value in median.items()},
        "ratio_ours_to_reference": median["reference"] / median["ours"],
        "queries": {"ours": ours.queries, "reference": reference.queries},
        "details": {"ours": ours.details, "reference": reference.details},
        "find_cap_unset_summary": unset,
    }


def run_pacs(workdir: Path, args: argparse.Namespace, findscu: str) -> dict[str, Any]:
    specs = plan_pacs(args.studies)
    peers = {CALLING_AE: ("127.0.0.1", free_port())}
    options = {"LimitFindResults": 0, "LimitFindInstances": 0}  # no cap: Orthanc's default
    with running_orthanc(
        workdir / "orthanc", aet=SOURCE_AET, modalities=peers, options=options
    ) as server:
        start = time.perf_counter()
        load_orthanc(server, specs)
        loading = time.perf_counter() - start
        bench = PacsBench(
            server=server,
            specs=specs,
            workdir=workdir,
            parallel=args.parallel,
            find_cap=args.find_cap,
            findscu=findscu,
        )
        print(
            f"pacs: {len(specs)} studies, {len(bench.instances)} instances loaded into"
            f" {server.dimse_url} in {loading:.1f} s (generate + POST /instances with"
            f" {UPLOAD_THREADS} threads; not timed)",
            flush=True,
        )
        floor = findscu_floor(bench)
        result = measure_pacs(bench, args.repeat)
    result["loading_seconds"] = loading
    result["findscu_floor_seconds"] = floor
    result["problems"] = bench.problems
    return result


def print_pacs(result: dict[str, Any]) -> None:
    median, rate = result["median_seconds"], result["studies_per_second"]
    inst = result["instances_per_second"]
    unset = result["find_cap_unset_summary"] or {}
    queries = {side: statistics.median(values) for side, values in result["queries"].items()}
    rows = [
        ("studies / series / instances", f"{result['studies']} / {result['series']} / "
         f"{result['instances']}"),
        ("repetitions (median used)", f"{result['repeat']}"),
        ("ours studies/s, inst/s", f"{rate['ours']:.1f}, {inst['ours']:.1f}  "
         f"({median['ours']:.2f} s)"),
        ("reference studies/s, inst/s", f"{rate['reference']:.1f}, {inst['reference']:.1f}  "
         f"({median['reference']:.2f} s)"),
        ("ratio ours / reference (rate)", f"{result['ratio_ours_to_reference']:.2f}"),
        ("C-FIND queries ours / reference", f"{queries['ours']:.0f} / {queries['reference']:.0f}"),
        ("ours, find_cap unset: study queries, splits",
         f"{unset.get('queries', '?')}, {unset.get('slices_split', '?')}"),
        ("(one findscu process, empty answer)", f"{result['findscu_floor_seconds'] * 1000:.0f} ms"),
        ("(loading Orthanc, not timed)", f"{result['loading_seconds']:.1f} s"),
    ]  # fmt: skip
    if result["find_cap"]:
        rows.insert(6, ("ours find_cap (timed runs)", f"{result['find_cap']}"))
    _print_rows("PACS inventory", rows)
    print(
        "ours = one `pacsmigrate -C PROJECT inventory` process in a fresh project: study\n"
        "queries (split when an answer is capped or of a round size), then one SERIES and\n"
        "one IMAGE C-FIND per study and series, over one association, one at a time.\n"
        f"reference = DCMTK findscu, {result['parallel']} processes at a time (xargs -P):"
        " one STUDY query per day\n"
        f"of the {DAYS} days the generated StudyDates span, then one job per study found:"
        " a SERIES\n"
        "query, then one IMAGE query per series. One process and one association per\n"
        "query; every query asks for the attributes ours asks for at that level."
    )


# --------------------------------------------------------------------------
# part 2: folder crawl memory


@dataclass
class Crawl:
    """One sampled ``pacsmigrate inventory`` run over a folder."""

    files: int
    seconds: float
    peak_kib: int
    samples: list[tuple[float, int]]  # (seconds since start, VmRSS KiB)
    progress: list[tuple[float, int]]  # (seconds since start, files read)
    summary: dict[str, Any]

    def rss_at(self, fraction: float) -> tuple[int, int]:
        """(files read, VmRSS KiB) when ``fraction`` of the files had been read; 1.0 is
        the last sample before the process ended."""
        if fraction >= 1.0 or not self.progress:
            return self.files, self.samples[-1][1]
        when, read = next(
            ((t, n) for t, n in self.progress if n >= fraction * self.files), self.progress[-1]
        )
        before = [rss for t, rss in self.samples if t <= when]
        return read, before[-1] if before else self.samples[0][1]


def _proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of ``pid`` in KiB; empty once it has exited."""
    values: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    values[key] = int(rest.split()[0])
    except (OSError, ValueError):
        return {}
    return values


def ours_folder(workdir: Path, root: Path, label: str) -> Crawl:
    """``pacsmigrate -v inventory`` on ``root``; RSS sampled every RSS_INTERVAL."""
    log = workdir / f"{label}.log"
    project = _new_project(workdir, label, root.as_uri(), log)
    command = [sys.executable, "-m", "pacsmigrate", "-v", "-C", str(project), "inventory"]
    progress: list[tuple[float, int]] = []
    samples: list[tuple[float, int]] = []
    peak = 0
    with log.open("a") as handle:
        handle.write(f"$ {' '.join(command)}\n")
        handle.flush()
        start = time.perf_counter()
        env = _env(None)
        env["COLUMNS"] = "300"  # rich wraps log lines at 80 columns when not on a terminal
        process = subprocess.Popen(
            command, stdout=handle, stderr=subprocess.PIPE, text=True, env=env
        )
        assert process.stderr is not None
        stderr = process.stderr

        def read_log() -> None:  # drains stderr, notes "inventory: N files read"
            for line in stderr:
                handle.write(line)
                if match := _PROGRESS.search(line):
                    progress.append((time.perf_counter() - start, int(match.group(1))))

        reader = threading.Thread(target=read_log, daemon=True)
        reader.start()
        try:
            while process.poll() is None:
                status = _proc_status(process.pid)
                if "VmRSS" in status:
                    samples.append((time.perf_counter() - start, status["VmRSS"]))
                    peak = max(peak, status.get("VmHWM", 0), status["VmRSS"])
                if time.perf_counter() - start > SUBPROCESS_TIMEOUT:
                    raise BenchError(
                        f"inventory of {root} still running after {SUBPROCESS_TIMEOUT} s"
                    )
                time.sleep(RSS_INTERVAL)
            seconds = time.perf_counter() - start
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            reader.join(timeout=10)
    if process.returncode != 0:
        raise BenchError(f"pacsmigrate inventory of {root} exited with {process.returncode}:\n"
                         f"{tail(log)}")  # fmt: skip
    if not samples:
        raise BenchError(f"inventory of {root} ended before its memory could be sampled")
    summary = read_ledger(project).summary
    return Crawl(int(summary.get("files", 0)), seconds, peak, samples, progress, summary)


def reference_folder(root: Path, parallel: int) -> tuple[float, int]:
    """``find | xargs -P dcmdump +P StudyInstanceUID``: seconds, lines printed."""
    command = f"find {root} -type f -print0 | xargs -0 -n 256 -P {parallel} dcmdump -q +P 0020,000d"
    start = time.perf_counter()
    with subprocess.Popen(
        ["bash", "-o", "pipefail", "-c", command], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as process:
        try:
            output, errors = process.communicate(timeout=SUBPROCESS_TIMEOUT)
        except BaseException:
            process.kill()
            raise
    seconds = time.perf_counter() - start
    if process.returncode != 0:
        raise BenchError(f"{command} exited with {process.returncode}: {errors[-1500:]!r}")
    return seconds, output.count(b"(0020,000d)")


def _mib(kib: float) -> str:
    return f"{kib / 1024:.1f} MiB"


def run_folder(workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    root = workdir / "folder"
    specs = plan_folder(args.files)
    start = time.perf_counter()
    written = write_folder(root, specs)
    writing = time.perf_counter() - start
    small = sum(spec.instances for spec in specs if spec.bucket == 0)
    print(
        f"folder: {written} files ({len(specs)} studies) written under {root} in {writing:.1f} s"
        f" (not timed); {root / 'b0'} holds {small} of them",
        flush=True,
    )
    problems: list[str] = []
    big: list[Crawl] = []
    little: list[Crawl] = []
    reference: list[float] = []
    for rep in range(args.repeat):
        tag = f"[{rep + 1}/{args.repeat}]"
        for crawls, folder, count, label in (
            (big, root, written, f"folder-project-{rep}"),
            (little, root / "b0", small, f"folder-project-small-{rep}"),
        ):
            crawl = ours_folder(workdir, folder, label)
            crawls.append(crawl)
            summary = crawl.summary
            if (crawl.files, summary.get("instances"), summary.get("findings")) != (
                count,
                count,
                0,
            ):
                problems.append(
                    f"MISMATCH ours on {folder}: {crawl.files} files, {summary.get('instances')}"
                    f" instances, {summary.get('findings')} findings; expected {count}, {count}, 0"
                )
                print(f"!!! {problems[-1]}", file=sys.stderr, flush=True)
            print(
                f"  {tag} ours       {crawl.files:7d} files {crawl.seconds:8.2f} s"
                f"  {crawl.files / crawl.seconds:8.1f} files/s  peak RSS {_mib(crawl.peak_kib)}",
                flush=True,
            )
            if folder == root:
                seconds, lines = reference_folder(root, args.parallel)
                reference.append(seconds)
                if lines != written:
                    problems.append(f"MISMATCH reference: {lines} UIDs printed, {written} files")
                    print(f"!!! {problems[-1]}", file=sys.stderr, flush=True)
                print(
                    f"  {tag} reference  {written:7d} files {seconds:8.2f} s"
                    f"  {written / seconds:8.1f} files/s  (find | xargs -P {args.parallel}"
                    " dcmdump)",
                    flush=True,
                )
    ours_seconds = statistics.median(crawl.seconds for crawl in big)
    ref_seconds = statistics.median(reference)
    points = {}
    for fraction in (0.1, 0.5, 1.0):
        pairs = [crawl.rss_at(fraction) for crawl in big]
        points[f"{fraction:.0%}"] = {
            "files": statistics.median(n for n, _ in pairs),
            "rss_kib": statistics.median(rss for _, rss in pairs),
        }
    first, last = points["10%"], points["100%"]
    per_10k = (
        (last["rss_kib"] - first["rss_kib"]) / ((last["files"] - first["files"]) / 10_000)
        if last["files"] > first["files"]
        else 0.0
    )
    return {
        "files": written,
        "studies": len(specs),
        "small_files": small,
        "repeat": args.repeat,
        "parallel": args.parallel,
        "writing_seconds": writing,
        "seconds": {"ours": [c.seconds for c in big], "reference": reference},
        "median_seconds": {"ours": ours_seconds, "reference": ref_seconds},
        "files_per_second": {"ours": written / ours_seconds, "reference": written / ref_seconds},
        "ratio_ours_to_reference": ref_seconds / ours_seconds,
        "peak_rss_kib": statistics.median(c.peak_kib for c in big),
        "peak_rss_small_kib": statistics.median(c.peak_kib for c in little),
        "small_files_per_second": statistics.median(c.files / c.seconds for c in little),
        "rss_points": points,
        "rss_growth_kib_per_10k_files": per_10k,
        "rss_samples": [c.samples for c in big],
        "summary": big[-1].summary,
        "problems": problems,
    }


def print_folder(result: dict[str, Any]) -> None:
    rate, median = result["files_per_second"], result["median_seconds"]
    points = result["rss_points"]
    rss = ", ".join(
        f"{name} ({point['files']:.0f} files) {_mib(point['rss_kib'])}"
        for name, point in points.items()
    )
    rows = [
        ("files / studies", f"{result['files']} / {result['studies']}"),
        ("repetitions (median used)", f"{result['repeat']}"),
        ("ours files/s", f"{rate['ours']:.1f}  ({median['ours']:.2f} s)"),
        ("reference files/s", f"{rate['reference']:.1f}  ({median['reference']:.2f} s)"),
        ("ratio ours / reference (rate)", f"{result['ratio_ours_to_reference']:.2f}"),
        (f"ours peak RSS, {result['files']} files", _mib(result["peak_rss_kib"])),
        (f"ours peak RSS, {result['small_files']} files", _mib(result["peak_rss_small_kib"])),
        ("ours RSS after 10 %, 50 %, 100 % of the files", rss),
        ("ours RSS growth per 10 000 files (10 % -> 100 %)",
         _mib(result["rss_growth_kib_per_10k_files"])),
        (f"(ours files/s, {result['small_files']} files)",
         f"{result['small_files_per_second']:.1f}"),
        ("(writing the files, not timed)", f"{result['writing_seconds']:.1f} s"),
    ]  # fmt: skip
    _print_rows("folder inventory", rows)
    print(
        "ours = one `pacsmigrate -v -C PROJECT inventory` process on file:///DIR in a fresh\n"
        "project (headers read with pydicom, checked, written to the SQLite ledger), VmRSS\n"
        f"sampled every {RSS_INTERVAL} s from /proc. reference = `find DIR -type f -print0 |"
        f" xargs -0 -n 256\n-P {result['parallel']} dcmdump -q +P 0020,000d`: parses every"
        " file, prints its StudyInstanceUID,\nwrites nothing. Files are in the page cache for"
        " both."
    )


# --------------------------------------------------------------------------
# main


def _print_rows(title: str, rows: list[tuple[str, str]]) -> None:
    width = max(len(name) for name, _ in rows)
    print(f"\n{title}")
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    print()


def dcmtk_tool(name: str) -> str | None:
    """The DCMTK executable ``name`` on PATH, skipping pynetdicom's scripts of the same
    name (a virtualenv's bin holds a ``findscu`` and ``storescu`` in Python)."""
    folders = os.environ.get("PATH", "").split(os.pathsep) + ["/usr/bin", "/usr/local/bin"]
    for folder in folders:
        candidate = Path(folder or ".") / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            with candidate.open("rb") as handle:
                if handle.read(2) != b"#!":
                    return str(candidate)
    return None


def _check_tools(parts: set[str]) -> tuple[str | None, str]:
    findscu = dcmtk_tool("findscu") or ""
    if "pacs" in parts:
        try:
            orthanc_binary()
        except OrthancNotInstalled as exc:
            return str(exc), findscu
        if not findscu:
            return "DCMTK findscu is not installed: run 'make deps' (package dcmtk)", findscu
    if "folder" in parts and not dcmtk_tool("dcmdump"):
        return "DCMTK dcmdump is not installed: run 'make deps' (package dcmtk)", findscu
    return None, findscu


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="pacsmigrate inventory speed and memory as ratios to plain DCMTK"
    )
    parser.add_argument("--part", choices=("pacs", "folder", "both"), default="both")
    parser.add_argument("--studies", type=int, help="studies in the PACS (default 10000)")
    parser.add_argument("--files", type=int, help="files in the folder (default 100000)")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 1000 studies and 10000 files by default"
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="run each side this many times and report medians"
    )
    parser.add_argument(
        "--parallel",
        type=int,
        default=4,
        help="processes at a time in the references (xargs -P)",
    )
    parser.add_argument(
        "--find-cap",
        type=int,
        default=0,
        help="inventory.find_cap for ours' timed PACS runs (default: unset); if set, one"
        " more untimed run without it reports the study queries and splits",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here")
    parser.add_argument(
        "--keep",
        type=Path,
        metavar="DIR",
        help="work in DIR and keep it (logs, projects, files) instead of a temp folder",
    )
    args = parser.parse_args(argv)
    if args.studies is None:
        args.studies = 1000 if args.quick else 10_000
    if args.files is None:
        args.files = 10_000 if args.quick else 100_000
    if args.studies < 1 or args.files < 10 or args.repeat < 1 or args.parallel < 1:
        parser.error("--studies, --repeat, --parallel must be at least 1, --files at least 10")
    if args.find_cap < 0:
        parser.error("--find-cap must be 0 (unset) or more")
    args.parts = {"pacs", "folder"} if args.part == "both" else {args.part}
    return args


def run_bench(workdir: Path, args: argparse.Namespace, findscu: str) -> dict[str, Any]:
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": {
            "python": platform.python_version(),
            "node": platform.machine(),
            "cpus": os.cpu_count(),
        },
    }
    started = time.perf_counter()
    result["process_start_seconds"] = statistics.median(
        _pacsmigrate(workdir / "version.log", "version") for _ in range(3)
    )
    if "pacs" in args.parts:
        result["pacs"] = run_pacs(workdir, args, findscu)
    if "folder" in args.parts:
        result["folder"] = run_folder(workdir, args)
    result["total_seconds"] = time.perf_counter() - started
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    problem, findscu = _check_tools(args.parts)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    code, result = in_workdir(
        args.keep,
        "pacsmigrate-inventory-bench-",
        lambda workdir: run_bench(workdir, args, findscu),
        "Orthanc (if started) was stopped",
    )
    if code:
        return code
    if "pacs" in result:
        print_pacs(result["pacs"])
    if "folder" in result:
        print_folder(result["folder"])
    print(
        f"(pacsmigrate process start, in every ours figure: {result['process_start_seconds']:.2f}"
        f" s; whole benchmark {result['total_seconds']:.0f} s)"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"figures written to {args.json}")
    problems = [p for part in ("pacs", "folder") for p in result.get(part, {}).get("problems", [])]
    for problem in problems:
        print(f"!!! {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
