"""Build an endpoint from its URL (DESIGN.md "Endpoints")."""

from __future__ import annotations

from urllib.parse import urlsplit

from pacsmigrate.endpoints.base import Endpoint, parse_dimse_url
from pacsmigrate.endpoints.dicomweb import DicomwebEndpoint, parse_dicomweb_url
from pacsmigrate.endpoints.dimse import DimseEndpoint, Timeouts
from pacsmigrate.endpoints.filesystem import FolderEndpoint, parse_file_url
from pacsmigrate.errors import ConfigError

__all__ = ["SCHEMES", "open_endpoint"]

SCHEMES = ("dimse://", "dicomweb+https://", "dicomweb+http:// (loopback)", "file:///")


def open_endpoint(url: str, *, calling_ae: str, timeouts: Timeouts) -> Endpoint:
    """The endpoint named by ``url``; a C-MOVE source sends to ``calling_ae``."""
    scheme = urlsplit(url).scheme
    if scheme == "dimse":
        return DimseEndpoint(
            parse_dimse_url(url, calling_ae), timeouts, move_destination=calling_ae
        )
    if scheme in ("dicomweb+http", "dicomweb+https"):
        return DicomwebEndpoint(parse_dicomweb_url(url), timeout=timeouts.dimse)
    if scheme == "file":
        return FolderEndpoint(parse_file_url(url))
    raise ConfigError(
        f"endpoint URL {url!r} has scheme {scheme!r}; supported: {', '.join(SCHEMES)}"
    )
