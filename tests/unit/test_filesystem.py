"""The folder reader: headers only, and a pixel data element that runs past the end
of the file is caught, whatever the transfer syntax (pydicom's own test files)."""

from __future__ import annotations

import shutil
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRLittleEndian

from pacsmigrate.endpoints.filesystem import FolderEndpoint, parse_file_url
from pacsmigrate.errors import ConfigError

INTACT = [
    "CT_small.dcm",  # explicit VR little endian
    "MR_small_implicit.dcm",
    "MR_small_bigendian.dcm",
    "MR_small_RLE.dcm",  # encapsulated
    "JPEG2000.dcm",
    "SC_rgb_small_odd_jpeg.dcm",
    "image_dfl.dcm",  # deflated: not walked, must not be flagged
    "ExplVR_LitEndNoMeta.dcm",  # no Part 10 header: a bare data set
    "ExplVR_BigEndNoMeta.dcm",
    "rtplan.dcm",  # no pixel data at all
]


def _copy(name: str, folder: Path) -> Path:
    source = get_testdata_file(name)
    assert source is not None, name
    target = folder / name
    shutil.copyfile(source, target)
    return target


@pytest.mark.parametrize("name", INTACT, ids=INTACT)
def test_intact_files_read_without_a_problem(name: str, tmp_path: Path) -> None:
    header = FolderEndpoint(tmp_path).read(_copy(name, tmp_path))
    assert (header.problem, header.detail) == ("", "")
    assert header.dataset is not None and "PixelData" not in header.dataset


def _pixel_data_start(path: Path) -> int:
    with path.open("rb") as fp:
        dcmread(fp, stop_before_pixels=True)
        return fp.tell()


@pytest.mark.parametrize(
    "name",
    ["CT_small.dcm", "MR_small_bigendian.dcm", "MR_small_implicit.dcm", "JPEG2000.dcm"],
)
@pytest.mark.parametrize("into", [0, 4, 12, -1], ids=["no-element", "in-tag", "at-value", "half"])
def test_truncated_pixel_data_is_unreadable(name: str, into: int, tmp_path: Path) -> None:
    path = _copy(name, tmp_path)
    data = path.read_bytes()
    start = _pixel_data_start(path)
    path.write_bytes(data[: start + (into if into >= 0 else (len(data) - start) // 2)])
    header = FolderEndpoint(tmp_path).read(path)
    assert header.problem == "unreadable_file", header.detail
    assert "pixel data" in header.detail


def test_encapsulated_pixel_data_without_its_end_marker(tmp_path: Path) -> None:
    path = _copy("JPEG2000.dcm", tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: data.rindex(b"\xfe\xff\xdd\xe0")])
    header = FolderEndpoint(tmp_path).read(path)
    assert (header.problem, header.detail) == (
        "unreadable_file",
        "file ends after 2 pixel data fragments, before the end marker",
    )


def test_pixel_data_is_never_loaded(tmp_path: Path) -> None:
    """A 64 MB image: reading its header allocates a tiny fraction of that."""
    ds = dcmread(get_testdata_file("CT_small.dcm"))
    ds.Rows = ds.Columns = 4096
    ds.PixelData = np.zeros((4096, 4096), dtype=np.uint16).tobytes()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    path = tmp_path / "big.dcm"
    ds.save_as(path, enforce_file_format=True)
    assert path.stat().st_size > 32 * 1024 * 1024
    tracemalloc.start()
    try:
        header = FolderEndpoint(tmp_path).read(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert header.problem == ""
    assert peak < 2 * 1024 * 1024, f"peak {peak} bytes while reading a header"


def test_non_dicom_and_empty_files(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not an image\n" * 20)
    (tmp_path / "empty").write_bytes(b"")
    reader = FolderEndpoint(tmp_path)
    assert reader.read(tmp_path / "notes.txt").problem == "not_dicom"
    assert reader.read(tmp_path / "empty").detail == "empty file"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("file://server/share", "must look like file:///absolute/path"),
        ("dimse://X@h:1", "must look like file:///absolute/path"),
    ],
)
def test_bad_folder_urls(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_file_url(url)
