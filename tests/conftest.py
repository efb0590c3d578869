"""Shared fixtures: generated hospital, temporary Orthanc servers, project folders."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pacsmigrate.ledger import repo
from pacsmigrate.ledger.db import Ledger
from pacsmigrate.testing.hospital import GeneratedInstance, generate_hospital
from pacsmigrate.testing.orthanc import OrthancServer, running_pair

CALLING_AE = "PACSMIGRATE"


def _have_orthanc() -> bool:
    return shutil.which("Orthanc") is not None or Path("/usr/sbin/Orthanc").exists()


needs_orthanc = pytest.mark.skipif(
    not _have_orthanc(), reason="Orthanc is not installed (make deps installs Debian's orthanc)"
)


@pytest.fixture(scope="session")
def hospital(tmp_path_factory: pytest.TempPathFactory) -> list[GeneratedInstance]:
    """The generated hospital at scale 1 (seed 0), written once per test session."""
    return generate_hospital(tmp_path_factory.mktemp("hospital"), seed=0, scale=1)


@dataclass
class Peers:
    """A loaded source Orthanc, an empty target Orthanc and a port for our SCP."""

    source: OrthancServer
    target: OrthancServer
    scp_port: int

    def init_project(self, project: Path, *extra: str, source_query: str = "") -> Path:
        """``pacsmigrate init`` a project pointing at these peers; return the folder."""
        result = run_cli(
            "init",
            str(project),
            "--source",
            f"{self.source.dimse_url}?calling={CALLING_AE}{source_query}",
            "--target",
            f"{self.target.dimse_url}?calling={CALLING_AE}",
            "--ae-title",
            CALLING_AE,
            "--port",
            str(self.scp_port),
            *extra,
        )
        assert result.returncode == 0, result.stderr
        return project


def set_setting(project: Path, section: str, key: str, value: str) -> None:
    """Replace ``key = ...`` inside ``[section]`` of a project's pacsmigrate.toml."""
    path = project / "pacsmigrate.toml"
    lines = path.read_text().splitlines()
    current = ""
    for index, line in enumerate(lines):
        if line.startswith("["):
            current = line.strip("[]")
        elif current == section and line.split("=")[0].strip() == key:
            lines[index] = f"{key} = {value}"
            break
    else:
        raise KeyError(f"{section}.{key}")
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def peers(tmp_path: Path, hospital: list[GeneratedInstance]) -> Iterator[Peers]:
    """Source Orthanc holding the generated hospital, empty target Orthanc."""
    if not _have_orthanc():
        pytest.skip("Orthanc is not installed (make deps installs Debian's orthanc)")
    with running_pair(tmp_path, [item.path for item in hospital], calling_ae=CALLING_AE) as pair:
        yield Peers(source=pair.source, target=pair.target, scp_port=pair.scp_port)


def run_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run ``pacsmigrate`` as a user would: a separate process, its exit code and output."""
    return subprocess.run(
        [sys.executable, "-m", "pacsmigrate", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def findings_by_kind(ledger: Ledger) -> dict[str, dict[str, int]]:
    """kind -> subject -> count, as the ledger holds them."""
    with ledger.session() as session:
        found: dict[str, dict[str, int]] = {}
        for row in repo.findings_of(session):
            found.setdefault(row.kind, {})[row.subject] = row.count
        return found
