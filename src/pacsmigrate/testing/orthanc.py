"""Temporary Orthanc servers on free loopback ports, for tests, the demo and benchmarks.

Orthanc comes from the Debian package ``orthanc`` (with ``orthanc-dicomweb``).
Each server gets its own storage folder and a generated configuration; it is
stopped (SIGTERM, then SIGKILL after a deadline) when the context exits.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

__all__ = [
    "OrthancNotInstalled",
    "OrthancPair",
    "OrthancServer",
    "free_port",
    "orthanc_binary",
    "running_orthanc",
    "running_pair",
]

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_PLUGIN_DIRS = ("/usr/share/orthanc/plugins", "/usr/lib/orthanc")


class OrthancNotInstalled(RuntimeError):
    """The Orthanc executable is not on this machine."""


_PRCTL: Any = None
# Resolved here, in the parent, so the child makes just one foreign call.
with contextlib.suppress(OSError, AttributeError):  # not Linux: no parent-death signal
    _PRCTL = ctypes.CDLL(None, use_errno=True).prctl


def _die_with_parent() -> None:
    """In the child: ask Linux to SIGTERM this Orthanc when its parent dies, so a
    killed test run or demo (even kill -9) leaves no server behind."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def orthanc_binary() -> str:
    """Path of the Orthanc executable, or raise :class:`OrthancNotInstalled`."""
    found = shutil.which("Orthanc") or (
        "/usr/sbin/Orthanc" if os.path.exists("/usr/sbin/Orthanc") else None
    )
    if not found:
        raise OrthancNotInstalled(
            "Orthanc is not installed: run 'make deps' (Debian packages orthanc, orthanc-dicomweb)"
        )
    return found


def _dicomweb_plugin() -> str | None:
    for folder in _PLUGIN_DIRS:
        candidate = Path(folder) / "libOrthancDicomWeb.so"
        if candidate.exists():
            return str(candidate)
    return None


@dataclass
class OrthancServer:
    """A running Orthanc: its DIMSE address, its REST API and a few helpers."""

    aet: str
    dicom_port: int
    http_port: int
    workdir: Path
    process: subprocess.Popen[bytes] | None = None
    session: requests.Session = field(default_factory=requests.Session)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dimse_url(self) -> str:
        """Endpoint URL in pacsmigrate's notation (without the calling AE)."""
        return f"dimse://{self.aet}@127.0.0.1:{self.dicom_port}"

    @property
    def dicomweb_url(self) -> str:
        return f"dicomweb+http://127.0.0.1:{self.http_port}/dicom-web"

    # REST helpers -------------------------------------------------------
    def get(self, path: str, **kwargs: Any) -> Any:
        response = self.session.get(self.url + path, timeout=60, **kwargs)
        response.raise_for_status()
        return response.json()

    def upload(self, data: bytes) -> dict[str, Any]:
        response = self.session.post(self.url + "/instances", data=data, timeout=60)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def upload_files(self, paths: list[Path]) -> int:
        for path in paths:
            self.upload(path.read_bytes())
        return len(paths)

    def instance_ids(self) -> list[str]:
        result: list[str] = self.get("/instances")
        return result

    def instance_file(self, orthanc_id: str) -> bytes:
        response = self.session.get(f"{self.url}/instances/{orthanc_id}/file", timeout=60)
        response.raise_for_status()
        return response.content

    def sop_instance_index(self) -> dict[str, str]:
        """Map SOP Instance UID -> Orthanc instance id for everything stored."""
        index: dict[str, str] = {}
        for orthanc_id in self.instance_ids():
            tags = self.get(f"/instances/{orthanc_id}")["MainDicomTags"]
            index[tags["SOPInstanceUID"]] = orthanc_id
        return index

    def statistics(self) -> dict[str, Any]:
        result: dict[str, Any] = self.get("/statistics")
        return result

    def delete_all(self) -> None:
        for patient in self.get("/patients"):
            self.session.delete(f"{self.url}/patients/{patient}", timeout=60).raise_for_status()

    # life cycle ---------------------------------------------------------
    def start(self, modalities: Mapping[str, tuple[str, int]], options: Mapping[str, Any]) -> None:
        config = self._config(modalities, options)
        config_path = self.workdir / "orthanc.json"
        config_path.write_text(json.dumps(config, indent=2))
        log = (self.workdir / "orthanc.log").open("wb")
        self.process = subprocess.Popen(
            [orthanc_binary(), str(config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # Only a libc call resolved beforehand runs between fork and exec.
            preexec_fn=_die_with_parent,  # noqa: PLW1509
        )
        self._wait_ready(deadline=time.monotonic() + 60)

    def _config(
        self, modalities: Mapping[str, tuple[str, int]], options: Mapping[str, Any]
    ) -> dict[str, Any]:
        plugin = _dicomweb_plugin()
        config: dict[str, Any] = {
            "Name": f"pacsmigrate-test-{self.aet}",
            "StorageDirectory": str(self.workdir / "storage"),
            "IndexDirectory": str(self.workdir / "index"),
            "DicomAet": self.aet,
            "DicomPort": self.dicom_port,
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "SslEnabled": False,
            "DicomServerEnabled": True,
            "DicomCheckCalledAet": True,
            "DicomAlwaysAllowStore": True,
            "DicomAlwaysAllowFind": True,
            "DicomAlwaysAllowMove": True,
            "DicomAlwaysAllowGet": True,
            "SynchronousCMove": True,
            "DicomScpTimeout": 300,
            "StorageCompression": False,
            "HttpThreadsCount": 20,
            "Plugins": [plugin] if plugin else [],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
            "DicomModalities": {
                name: [name, host, port] for name, (host, port) in modalities.items()
            },
        }
        config.update(options)
        return config

    def _wait_ready(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                log = (self.workdir / "orthanc.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"Orthanc exited with code {self.process.returncode}: {log}")
            try:
                self.session.get(self.url + "/system", timeout=2).raise_for_status()
                return
            except requests.RequestException:
                time.sleep(0.1)
        raise RuntimeError(f"Orthanc did not answer on {self.url} within 60 s")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


@contextmanager
def running_orthanc(
    workdir: Path,
    *,
    aet: str = "ORTHANC",
    modalities: Mapping[str, tuple[str, int]] | None = None,
    options: Mapping[str, Any] | None = None,
) -> Iterator[OrthancServer]:
    """Start an Orthanc in ``workdir`` on free ports; stop it on exit (also on Ctrl-C)."""
    workdir.mkdir(parents=True, exist_ok=True)
    server = OrthancServer(aet=aet, dicom_port=free_port(), http_port=free_port(), workdir=workdir)
    try:
        server.start(modalities or {}, options or {})
        yield server
    finally:
        server.stop()
        server.session.close()


@dataclass
class OrthancPair:
    """A source Orthanc loaded with instances, an empty target, and the port of
    our Storage SCP, which both know as ``calling_ae``."""

    source: OrthancServer
    target: OrthancServer
    scp_port: int


@contextmanager
def running_pair(
    workdir: Path, files: list[Path], *, calling_ae: str = "PACSMIGRATE"
) -> Iterator[OrthancPair]:
    """Source (``OLDPACS``) holding ``files`` and an empty target (``NEWPACS``)."""
    scp_port = free_port()
    modalities = {calling_ae: ("127.0.0.1", scp_port)}
    with (
        running_orthanc(workdir / "source", aet="OLDPACS", modalities=modalities) as source,
        running_orthanc(workdir / "target", aet="NEWPACS", modalities=modalities) as target,
    ):
        source.upload_files(files)
        yield OrthancPair(source=source, target=target, scp_port=scp_port)
