"""Tests of the dirty corpus generator (pacsmigrate.testing.dirty), not of the checker.

Besides checking the files on disk, a small reference walk below recomputes
the header and identity kinds from the files, so a clean file that triggers a
kind by accident, or a seed that triggers two, makes a test fail.
"""

from __future__ import annotations

import re
import struct
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.fileset import FileSet
from pydicom.tag import Tag

from pacsmigrate.ledger.findings import FindingKind
from pacsmigrate.testing.dirty import RETENTION_CUTOFF, DirtyCorpus, generate_dirty_hospital

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

PATH_KINDS = (
    "not_dicom",
    "unreadable_file",
    "missing_study_uid",
    "missing_series_uid",
    "missing_sop_instance_uid",
)
PEER_KINDS = (
    "slice_truncated",
    "duplicate_rows",
    "zero_image_study",
    "instance_count_mismatch",
    "target_refuses",
)
UID_RE = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")
CODECS = {None: "ascii", "ISO_IR 100": "latin-1", "ISO_IR 192": "utf-8"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> DirtyCorpus:
    return generate_dirty_hospital(tmp_path_factory.mktemp("dirty"))


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _subjects(corpus: DirtyCorpus, *kinds: str) -> set[str]:
    return set().union(*(corpus.expected[kind] for kind in kinds))


def _readable(corpus: DirtyCorpus) -> list[tuple[Path, Dataset]]:
    """Every file except the expected non-DICOM and unreadable ones, fully read."""
    skip = _subjects(corpus, "not_dicom", "unreadable_file")
    return [(p, pydicom.dcmread(p)) for p in sorted(corpus.files) if str(p) not in skip]


def _text(ds: Dataset, keyword: str) -> str:
    return str(ds.get(keyword, "") or "")


def _has_uids(ds: Dataset) -> bool:
    return all(_text(ds, kw) for kw in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"))


# --------------------------------------------------------------------------
# shape and determinism


def test_same_seed_gives_byte_identical_files(tmp_path: Path) -> None:
    first = generate_dirty_hospital(tmp_path / "a")
    second = generate_dirty_hospital(tmp_path / "b")
    for name in ("dirty", "fileset"):
        tree_a, tree_b = _tree(tmp_path / "a" / name), _tree(tmp_path / "b" / name)
        assert tree_a == tree_b
        assert tree_a
    assert first.instances == second.instances
    assert first.expected["invalid_uid"] == second.expected["invalid_uid"]
    other = generate_dirty_hospital(tmp_path / "c", seed=8)
    assert not other.instances & first.instances


def test_files_are_all_files_under_root(corpus: DirtyCorpus) -> None:
    on_disk = {p for p in corpus.root.rglob("*") if p.is_file()}
    assert set(corpus.files) == on_disk
    assert len(corpus.files) == len(on_disk)
    assert 40 <= len(on_disk) <= 60
    assert any(p.suffix != ".dcm" for p in on_disk)
    assert any(p.parent == corpus.root for p in on_disk)
    assert max(len(p.relative_to(corpus.root).parts) for p in on_disk) >= 4
    assert corpus.root.is_absolute()
    assert corpus.dicomdir_root not in corpus.root.parents
    assert corpus.root not in corpus.dicomdir_root.parents


def test_expected_covers_every_kind(corpus: DirtyCorpus) -> None:
    assert set(corpus.expected) == {kind.value for kind in FindingKind}
    for kind, subjects in corpus.expected.items():
        if kind in PEER_KINDS:
            assert subjects == set(), kind
        else:
            assert 1 <= len(subjects) <= 4, kind
    keys = {(kind, s) for kind, subjects in corpus.expected.items() for s in subjects}
    assert set(corpus.expected_counts) == keys
    assert all(count >= 1 for count in corpus.expected_counts.values())


def test_clean_studies_span_modalities_years_and_an_empty_date(corpus: DirtyCorpus) -> None:
    headers = corpus.dimse_headers()
    assert {"CT", "MR", "CR", "US", "SR"} <= {_text(ds, "Modality") for ds in headers}
    years = {_text(ds, "StudyDate")[:4] for ds in headers}
    assert {"2009", "2024"} <= years
    assert "" in years


# --------------------------------------------------------------------------
# files that are not DICOM or cannot be read


def test_path_subjects_exist_under_root(corpus: DirtyCorpus) -> None:
    paths = _subjects(corpus, *PATH_KINDS)
    assert len(paths) == 9
    for subject in paths:
        path = Path(subject)
        assert path.is_file(), subject
        assert path in corpus.files
        assert corpus.root in path.parents


def test_not_dicom_files_are_rejected(corpus: DirtyCorpus) -> None:
    blobs = [Path(s).read_bytes() for s in corpus.expected["not_dicom"]]
    assert b"" in blobs
    assert any(blob.startswith(b"\x89PNG") for blob in blobs)
    for subject in corpus.expected["not_dicom"]:
        assert Path(subject).read_bytes()[128:132] != b"DICM"
        with pytest.raises(InvalidDicomError):
            pydicom.dcmread(subject)


def _pixel_shortfall(data: bytes) -> int:
    """Declared PixelData length minus the bytes that follow its header."""
    at = data.rindex(b"\xe0\x7f\x10\x00")
    assert data[at + 4 : at + 6] in (b"OW", b"OB")
    (declared,) = struct.unpack("<I", data[at + 8 : at + 12])
    return int(declared) - len(data[at + 12 :])


def test_unreadable_files_fail_or_are_short(corpus: DirtyCorpus) -> None:
    failed, short = [], []
    for subject in sorted(corpus.expected["unreadable_file"]):
        data = Path(subject).read_bytes()
        assert data[128:132] == b"DICM"
        try:
            ds = pydicom.dcmread(subject)
        except InvalidDicomError:
            pytest.fail(f"{subject} must look like Part 10")
        except Exception:  # any parse failure is what we want
            failed.append(subject)
            continue
        assert _pixel_shortfall(data) == 64
        assert len(ds.PixelData) < ds.Rows * ds.Columns * ds.BitsAllocated // 8
        with pytest.raises(ValueError, match="less than expected"):
            _ = ds.pixel_array
        short.append(subject)
    assert len(failed) == 2
    assert len(short) == 1


def test_pixel_truncated_file_has_a_readable_sibling(corpus: DirtyCorpus) -> None:
    cut = next(p for p in corpus.expected["unreadable_file"] if p.endswith("IM2"))
    ds = pydicom.dcmread(cut, stop_before_pixels=True)
    assert str(ds.StudyInstanceUID) in corpus.studies
    assert str(ds.SOPInstanceUID) not in corpus.instances


# --------------------------------------------------------------------------
# UIDs


def _uid_subject(raw: bytes) -> str:
    """The checker's rule: drop the one legal NUL pad, escape remaining NULs."""
    if len(raw) % 2 == 0 and raw.endswith(b"\x00"):
        raw = raw[:-1]
    return raw.decode("ascii").replace("\x00", "\\x00")


def _invalid(value: str) -> bool:
    return len(value) > 64 or UID_RE.fullmatch(value) is None


def _uid_values(ds: Dataset) -> Iterator[bytes]:
    """Raw values of every top-level UI element, file meta included."""
    for source in (ds.file_meta, ds):
        for tag in list(source.keys()):
            if tag.is_private or dictionary_VR(tag) != "UI":
                continue
            value = source.get_item(tag).value
            if value:
                yield value if isinstance(value, bytes) else str(value).encode("ascii")


def test_invalid_uid_bytes_on_disk(corpus: DirtyCorpus) -> None:
    found: Counter[str] = Counter()
    raw_values: set[bytes] = set()
    for _, ds in _readable(corpus):
        invalid = {_uid_subject(raw) for raw in _uid_values(ds) if _invalid(_uid_subject(raw))}
        found.update(invalid)
        raw_values |= {raw for raw in _uid_values(ds) if _uid_subject(raw) in invalid}
    assert set(found) == corpus.expected["invalid_uid"]
    for subject, count in found.items():
        assert corpus.expected_counts[("invalid_uid", subject)] == count
    assert any(raw.endswith(b"\x00\x00") for raw in raw_values)
    assert any(len(raw) > 64 for raw in raw_values)
    assert any(re.search(rb"\.0[0-9]", raw) for raw in raw_values)
    assert any(re.search(rb"[a-z]", raw) for raw in raw_values)


def test_studies_and_instances_match_a_walk(corpus: DirtyCorpus) -> None:
    with_uids = [(p, ds) for p, ds in _readable(corpus) if _has_uids(ds)]
    assert {_text(ds, "StudyInstanceUID") for _, ds in with_uids} == corpus.studies
    assert {_text(ds, "SOPInstanceUID") for _, ds in with_uids} == corpus.instances
    assert [p for p, _ in with_uids] == sorted(corpus.header_files)
    missing = _subjects(corpus, "missing_study_uid", "missing_series_uid")
    missing |= corpus.expected["missing_sop_instance_uid"]
    assert not missing & {str(p) for p in corpus.header_files}


def test_dimse_headers_have_no_pixel_data(corpus: DirtyCorpus) -> None:
    headers = corpus.dimse_headers()
    assert len(headers) == len(corpus.header_files)
    assert all("PixelData" not in ds and _has_uids(ds) for ds in headers)
    assert {_text(ds, "SOPInstanceUID") for ds in headers} == corpus.instances


# --------------------------------------------------------------------------
# character sets


def _charset(ds: Dataset) -> str | None:
    item = ds.get_item(0x00080005)
    return None if item is None else _raw_text(item.value)


def _raw_text(value: object) -> str:
    text = value.decode("ascii") if isinstance(value, bytes) else str(value)
    return text.rstrip(" ")


def test_charset_seeds_decode_or_fail_as_described(corpus: DirtyCorpus) -> None:
    unknown: Counter[str] = Counter()
    undecodable: set[str] = set()
    for _, ds in _readable(corpus):
        charset = _charset(ds)
        name = ds.get_item(0x00100010).value
        assert isinstance(name, bytes)
        if charset not in CODECS:
            unknown[str(charset)] += 1
            name.decode("ascii")  # the unknown-charset files carry ASCII names
            continue
        try:
            name.decode(CODECS[charset])
        except UnicodeDecodeError:
            undecodable.add(_text(ds, "SOPInstanceUID"))
    assert dict(unknown) == {
        s: corpus.expected_counts[("unknown_charset", s)]
        for s in corpus.expected["unknown_charset"]
    }
    assert undecodable == corpus.expected["undecodable_text"]
    assert all(corpus.expected_counts[("undecodable_text", s)] == 1 for s in undecodable)
    assert {"ISO-IR 100", "LATIN1"} == set(unknown)


def test_undecodable_names_are_non_ascii(corpus: DirtyCorpus) -> None:
    seen = set()
    for _, ds in _readable(corpus):
        if _text(ds, "SOPInstanceUID") in corpus.expected["undecodable_text"]:
            seen.add(_charset(ds))
            assert not ds.get_item(0x00100010).value.isascii()
    assert seen == {None, "ISO_IR 192"}


# --------------------------------------------------------------------------
# reference walk of the header and identity kinds


def _header_kinds(files: list[tuple[Path, Dataset]]) -> Counter[tuple[str, str]]:
    found: Counter[tuple[str, str]] = Counter()
    for path, ds in files:
        for keyword, kind in (
            ("StudyInstanceUID", "missing_study_uid"),
            ("SeriesInstanceUID", "missing_series_uid"),
            ("SOPInstanceUID", "missing_sop_instance_uid"),
        ):
            if not _text(ds, keyword):
                found[(kind, str(path))] += 1
        if not _has_uids(ds):
            continue
        if not _text(ds, "PatientID"):
            found[("missing_patient_id", _text(ds, "StudyInstanceUID"))] += 1
        if not _text(ds, "SOPClassUID"):
            found[("missing_sop_class_uid", _text(ds, "SOPInstanceUID"))] += 1
        if not _text(ds, "Modality"):
            found[("missing_modality", _text(ds, "SeriesInstanceUID"))] += 1
        for creator in {e.value for e in ds if Tag(e.tag).is_private_creator}:
            found[("private_creator", str(creator))] += 1
    return found


def _identity_kinds(files: list[tuple[Path, Dataset]]) -> Counter[tuple[str, str]]:
    pids_of_study: dict[str, set[str]] = defaultdict(set)
    places: Counter[str] = Counter()
    people: dict[str, set[tuple[str, str]]] = defaultdict(set)
    ids_of_person: dict[str, set[str]] = defaultdict(set)
    dates: dict[str, str] = {}
    for _, ds in files:
        if not _has_uids(ds):
            continue
        study, pid = _text(ds, "StudyInstanceUID"), _text(ds, "PatientID")
        places[_text(ds, "SOPInstanceUID")] += 1
        dates[study] = _text(ds, "StudyDate")
        if pid:
            name, birth = str(ds.PatientName), _text(ds, "PatientBirthDate")
            pids_of_study[study].add(pid)
            people[pid].add((name, birth))
            ids_of_person[f"{name}|{birth}"].add(pid)
    found: Counter[tuple[str, str]] = Counter()
    for kind, groups in (
        ("study_under_two_patients", pids_of_study),
        ("patient_id_conflict", people),
        ("patient_under_several_ids", ids_of_person),
    ):
        found.update({(kind, k): len(v) for k, v in groups.items() if len(v) > 1})
    found.update({("sop_uid_in_two_places", k): n for k, n in places.items() if n > 1})
    old = {k for k, d in dates.items() if d and d < RETENTION_CUTOFF}
    found.update({("past_retention", k): 1 for k in old})
    return found


WALKED_KINDS = (
    "missing_patient_id",
    "missing_study_uid",
    "missing_series_uid",
    "missing_sop_instance_uid",
    "missing_sop_class_uid",
    "missing_modality",
    "private_creator",
    "study_under_two_patients",
    "sop_uid_in_two_places",
    "patient_id_conflict",
    "patient_under_several_ids",
    "past_retention",
)


@pytest.mark.parametrize("kind", WALKED_KINDS)
def test_reference_walk_finds_exactly_the_expected(corpus: DirtyCorpus, kind: str) -> None:
    files = _readable(corpus)
    found = _header_kinds(files) + _identity_kinds(files)
    got = {subject: n for (k, subject), n in found.items() if k == kind}
    want = {s: corpus.expected_counts[(kind, s)] for s in corpus.expected[kind]}
    assert got == want


def test_private_creator_files_carry_real_blocks(corpus: DirtyCorpus) -> None:
    blocks: Counter[str] = Counter()
    for _, ds in _readable(corpus):
        for elem in ds:
            if Tag(elem.tag).is_private_creator:
                block = ds.private_block(elem.tag.group, str(elem.value))
                assert sum(1 for _ in ds.group_dataset(elem.tag.group)) >= 3
                assert block.block_start > 0
                blocks[str(elem.value)] += 1
    assert blocks["SIEMENS CSA HEADER"] == 3  # two files, one of them with two blocks


def test_past_retention_is_the_2016_cutoff(corpus: DirtyCorpus) -> None:
    assert RETENTION_CUTOFF == "20160101"
    years = {
        _text(ds, "StudyDate")[:4]
        for ds in corpus.dimse_headers()
        if _text(ds, "StudyInstanceUID") in corpus.expected["past_retention"]
    }
    assert years == {"2009", "2012", "2014"}


# --------------------------------------------------------------------------
# DICOMDIR File-set


@pytest.fixture
def fileset(corpus: DirtyCorpus) -> Iterator[FileSet]:
    fs = FileSet(pydicom.dcmread(corpus.dicomdir_root / "DICOMDIR"))
    yield fs
    fs._stage["t"].cleanup()  # pydicom's staging folder would linger until GC


def test_dicomdir_lists_exactly_the_referenced_instances(
    corpus: DirtyCorpus, fileset: FileSet
) -> None:
    listed = {str(instance.SOPInstanceUID) for instance in fileset}
    assert listed == corpus.dicomdir_instances
    assert len(listed) == 6
    assert len({str(i.StudyInstanceUID) for i in fileset}) == 3
    for instance in fileset:
        assert Path(instance.path).is_file()
        assert corpus.dicomdir_root in Path(instance.path).parents
    stray = [p for p in corpus.dicomdir_root.rglob("*") if p.is_file() and p.name != "DICOMDIR"]
    assert len(stray) == 7
    stray_uids = {str(pydicom.dcmread(p).SOPInstanceUID) for p in stray} - listed
    assert stray_uids == corpus.unreferenced
    assert len(corpus.unreferenced) == 1
