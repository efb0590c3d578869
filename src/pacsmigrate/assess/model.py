"""What ``pacsmigrate assess`` computes, as plain data (rendered to HTML, CSV, JSON)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Assessment", "FindingGroup", "LargeStudy"]


@dataclass
class FindingGroup:
    """All findings of one kind: ``subjects`` are (subject, count, detail) rows."""

    kind: str
    severity: str  # "error" | "warning" | "info"
    title: str
    advice: str
    subjects: list[tuple[str, int, str]] = field(default_factory=list)

    @property
    def count(self) -> int:
        """How many subjects (UIDs, paths, creators...) this kind names."""
        return len(self.subjects)

    @property
    def occurrences(self) -> int:
        """How many instances or rows those subjects stand for."""
        return sum(count for _, count, _ in self.subjects)


@dataclass
class LargeStudy:
    study_uid: str
    study_date: str  # YYYYMMDD or ""
    modalities: str  # "CT\\SR"
    instances: int
    size: int | None  # bytes; None when the source does not tell


@dataclass
class Assessment:
    source: str  # endpoint label, e.g. "OLDPACS@127.0.0.1:4242" or "/data/archive"
    generated_at: str  # ISO 8601 UTC
    studies: int
    series: int
    instances: int
    size: int | None  # bytes known; None when no size is known
    sized_studies: int  # studies whose size is known
    # year ("2019", or "unknown" for empty/invalid dates) -> modality -> studies
    studies_per_year: dict[str, dict[str, int]]
    # year -> bytes (only studies whose size is known)
    bytes_per_year: dict[str, int]
    # one entry per study: its size in bytes (sized studies only)
    study_sizes: list[int]
    # one entry per study: its instance count
    study_instance_counts: list[int]
    largest: list[LargeStudy]  # top 20 by size, else by instances
    findings: list[FindingGroup]
    # duration estimate: {"throughput": float, "unit": "instances/s", "basis": str,
    #  "seconds": float} or {"basis": "unknown", "hint": "..."}
    estimate: dict[str, Any]
    show_phi: bool = False
    notes: list[str] = field(default_factory=list)  # what was (not) checked, and why

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["findings"] = [
            {**asdict(group), "count": group.count, "occurrences": group.occurrences}
            for group in self.findings
        ]
        return data
