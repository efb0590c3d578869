"""Ledger tables (SQLAlchemy 2). One schema for SQLite and PostgreSQL.

Column names are snake_case; DICOM keywords map to them in ``inventory``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

__all__ = ["AuditRecord", "Base", "Finding", "Instance", "Run", "Series", "Study", "utcnow"]


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class Study(Base):
    __tablename__ = "studies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_uid: Mapped[str] = mapped_column(String(), unique=True)
    patient_id: Mapped[str] = mapped_column(String(), default="")
    patient_name: Mapped[str] = mapped_column(String(), default="")
    patient_birth_date: Mapped[str] = mapped_column(String(), default="")
    study_date: Mapped[str] = mapped_column(String(), default="")
    accession_number: Mapped[str] = mapped_column(String(), default="")
    modalities: Mapped[str] = mapped_column(String(), default="")
    description: Mapped[str] = mapped_column(String(), default="")
    reported_instances: Mapped[int | None] = mapped_column(Integer, nullable=True)
    state: Mapped[str] = mapped_column(String(), default="discovered", index=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    error_class: Mapped[str] = mapped_column(String(), default="")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_host: Mapped[str] = mapped_column(String(), default="")
    lease_pid: Mapped[int] = mapped_column(Integer, default=0)
    discovered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    series: Mapped[list[Series]] = relationship(back_populates="study")
    instances: Mapped[list[Instance]] = relationship(back_populates="study")


class Series(Base):
    __tablename__ = "series"
    __table_args__ = (UniqueConstraint("study_id", "series_uid"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    series_uid: Mapped[str] = mapped_column(String())
    modality: Mapped[str] = mapped_column(String(), default="")
    series_number: Mapped[str] = mapped_column(String(), default="")
    description: Mapped[str] = mapped_column(String(), default="")

    study: Mapped[Study] = relationship(back_populates="series")
    instances: Mapped[list[Instance]] = relationship(back_populates="series")


class Instance(Base):
    __tablename__ = "instances"
    __table_args__ = (
        UniqueConstraint("study_id", "sop_instance_uid"),
        Index("ix_instances_sop_instance_uid", "sop_instance_uid"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id", ondelete="CASCADE"), index=True)
    sop_instance_uid: Mapped[str] = mapped_column(String())
    sop_class_uid: Mapped[str] = mapped_column(String(), default="")
    instance_number: Mapped[str] = mapped_column(String(), default="")
    transfer_syntax_uid: Mapped[str] = mapped_column(String(), default="")
    size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    sha256: Mapped[str] = mapped_column(String(), default="")
    pixel_digest: Mapped[str] = mapped_column(String(), default="")
    received_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    store_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    store_error: Mapped[str] = mapped_column(Text, default="")
    stored_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    verify_state: Mapped[str] = mapped_column(String(), default="pending")
    source_path: Mapped[str] = mapped_column(String(), default="")  # file:// sources

    study: Mapped[Study] = relationship(back_populates="instances")
    series: Mapped[Series] = relationship(back_populates="instances")


class Run(Base):
    """One invocation of a stage: who ran it, when, and how it ended."""

    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    stage: Mapped[str] = mapped_column(String())
    host: Mapped[str] = mapped_column(String(), default="")
    pid: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    outcome: Mapped[str] = mapped_column(String(), default="running")
    summary: Mapped[str] = mapped_column(Text, default="{}")


class Finding(Base):
    """One data-quality problem: a kind (ledger/findings.py) and the thing it is about."""

    __tablename__ = "findings"
    __table_args__ = (UniqueConstraint("kind", "subject"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(), index=True)
    severity: Mapped[str] = mapped_column(String())
    stage: Mapped[str] = mapped_column(String(), index=True)
    subject: Mapped[str] = mapped_column(String())  # a UID, a path, a private creator...
    count: Mapped[int] = mapped_column(Integer, default=1)  # instances or rows involved
    detail: Mapped[str] = mapped_column(Text, default="")
    study_uid: Mapped[str] = mapped_column(String(), default="")
    found_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AuditRecord(Base):
    """Append-only event log; each record carries the hash of the previous one."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    stage: Mapped[str] = mapped_column(String())
    event: Mapped[str] = mapped_column(String())
    study_uid: Mapped[str] = mapped_column(String(), default="")
    detail: Mapped[str] = mapped_column(Text, default="{}")
    prev_hash: Mapped[str] = mapped_column(String(), default="")
    hash: Mapped[str] = mapped_column(String(), default="")
