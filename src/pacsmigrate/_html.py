"""What the HTML reports (migration report, assessment) share."""

from __future__ import annotations

from importlib import resources

__all__ = ["base_css"]


def base_css() -> str:
    """The shared style sheet, inlined: hospitals read reports offline."""
    return (resources.files("pacsmigrate") / "base.css").read_text(encoding="utf-8")
