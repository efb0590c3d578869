"""DIMSE status codes we act on (PS3.4 Annex C), as named constants."""

from __future__ import annotations

__all__ = [
    "CANCEL",
    "MOVE_DESTINATION_UNKNOWN",
    "OUT_OF_RESOURCES",
    "OUT_OF_RESOURCES_SUBOPS",
    "PROCESSING_FAILURE",
    "SUCCESS",
    "describe",
    "is_pending",
    "is_success_or_warning",
]

SUCCESS = 0x0000
PENDING = 0xFF00
PENDING_WARNING = 0xFF01
CANCEL = 0xFE00
MOVE_DESTINATION_UNKNOWN = 0xA801
OUT_OF_RESOURCES_SUBOPS = 0xA702
OUT_OF_RESOURCES = 0xA700
PROCESSING_FAILURE = 0x0110
ELEMENTS_DISCARDED = 0xB006
DATASET_DOES_NOT_MATCH = 0xB007

_NAMES = {
    SUCCESS: "success",
    PENDING: "pending",
    PENDING_WARNING: "pending (optional keys unsupported)",
    CANCEL: "cancelled",
    MOVE_DESTINATION_UNKNOWN: "move destination unknown",
    OUT_OF_RESOURCES_SUBOPS: "out of resources (sub-operations)",
    OUT_OF_RESOURCES: "out of resources",
    PROCESSING_FAILURE: "processing failure",
    0x0122: "SOP class not supported",
    0x0124: "not authorised",
    0xA900: "data set does not match SOP class",
    0xC000: "cannot understand",
    0xB000: "warning: coercion of data elements / sub-operations failed",
    ELEMENTS_DISCARDED: "warning: elements discarded",
    DATASET_DOES_NOT_MATCH: "warning: data set does not match SOP class",
}


def is_pending(code: int) -> bool:
    return code in (PENDING, PENDING_WARNING)


def is_success_or_warning(code: int) -> bool:
    """C-STORE outcome that leaves the instance stored on the peer."""
    return code == SUCCESS or (code & 0xF000) == 0xB000 or code == 0x0001


def describe(code: int) -> str:
    name = _NAMES.get(code)
    if name is None and (code & 0xFF00) == 0xA700:
        name = "out of resources"
    if name is None and (code & 0xF000) == 0xC000:
        name = "cannot understand"
    return f"0x{code:04X}" + (f" {name}" if name else "")
