"""Study states and the transitions between them (DESIGN.md, "Ledger"). Pure logic."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["TRANSITIONS", "InstanceVerify", "StudyState", "check_transition"]


class StudyState(StrEnum):
    DISCOVERED = "discovered"
    QUEUED = "queued"
    TRANSFERRING = "transferring"
    TRANSFERRED = "transferred"
    VERIFIED = "verified"
    EXCLUDED = "excluded"
    FAILED = "failed"
    QUARANTINED = "quarantined"


class InstanceVerify(StrEnum):
    PENDING = "pending"
    PRESENT = "present"
    MISSING = "missing"


S = StudyState
TRANSITIONS: dict[StudyState, frozenset[StudyState]] = {
    S.DISCOVERED: frozenset({S.QUEUED, S.EXCLUDED, S.QUARANTINED}),
    S.QUEUED: frozenset({S.TRANSFERRING, S.EXCLUDED, S.QUARANTINED}),
    # back to queued: a retry, or a stale lease after a crash
    S.TRANSFERRING: frozenset({S.TRANSFERRED, S.QUEUED, S.FAILED, S.QUARANTINED}),
    # back to queued: verify found instances missing on the target
    S.TRANSFERRED: frozenset({S.VERIFIED, S.QUEUED, S.FAILED, S.QUARANTINED}),
    # back to queued: a re-verify found instances missing (deleted on the target)
    S.VERIFIED: frozenset({S.QUEUED}),
    S.EXCLUDED: frozenset({S.QUEUED}),
    S.FAILED: frozenset({S.QUEUED}),
    S.QUARANTINED: frozenset({S.QUEUED}),
}


def check_transition(old: StudyState, new: StudyState) -> None:
    """Raise ``ValueError`` for a transition the ledger does not allow."""
    if new != old and new not in TRANSITIONS[old]:
        raise ValueError(f"study state cannot go from {old.value!r} to {new.value!r}")
