"""Errors a user can act on. Each class carries the process exit code it maps to.

The CLI prints ``str(error)`` (no traceback) and exits with ``error.exit_code``.
Messages say what failed, quote the value and say what to fix.
"""

from __future__ import annotations

__all__ = [
    "EXIT_CODES",
    "AssociationRejected",
    "ContextRefused",
    "ConfigError",
    "LedgerError",
    "MoveDestinationUnknown",
    "PacsmigrateError",
    "PeerUnreachable",
    "ProtocolError",
    "TransientError",
]


class PacsmigrateError(Exception):
    """Base class: an error with a message meant for the user."""

    exit_code = 1


class ConfigError(PacsmigrateError):
    """The configuration or the command line is wrong."""

    exit_code = 2


class PeerUnreachable(PacsmigrateError):
    """A peer did not answer on its host and port (refused, timed out, unknown host)."""

    exit_code = 3


class AssociationRejected(PacsmigrateError):
    """A peer answered but rejected or aborted the association (AE titles, contexts, limits)."""

    exit_code = 4


class MoveDestinationUnknown(PacsmigrateError):
    """The source refused to C-MOVE to our AE title (status 0xA801 or similar)."""

    exit_code = 5


class ProtocolError(PacsmigrateError):
    """A peer answered with something we cannot use (failed query, bad status)."""

    exit_code = 6


class LedgerError(PacsmigrateError):
    """The ledger database cannot be opened or is not at the expected schema."""

    exit_code = 7


#: Exit codes, documented in ``pacsmigrate --help``.
EXIT_CODES: dict[int, str] = {
    0: "success: every study in scope is verified (or the stage finished cleanly)",
    1: "finished, but some studies failed or were quarantined (see the report)",
    2: "configuration or usage error (the message names the setting to fix)",
    3: "a peer is unreachable (check host, port, firewall)",
    4: "a peer rejected the association (check AE titles and what it accepts)",
    5: "the source does not know our AE title as a move destination (register it)",
    6: "a peer answered a query or retrieve with a failure status",
    7: "the ledger database cannot be opened or migrated",
    130: "interrupted (Ctrl-C); run the same command again to resume",
}


class TransientError(PacsmigrateError):
    """A failure that may go away on retry: abort, timeout, 0xA702, transient rejection."""

    exit_code = 6


class ContextRefused(PacsmigrateError):
    """The target accepted no presentation context for an instance's SOP class and syntax."""

    exit_code = 6
