"""Dataset adapters: annotation files → ``{"train": [Sample, ...], "test": [...]}``.

Adapters: :mod:`.mtl_aqa`, :mod:`.aqa7`, :mod:`.jigsaws`, :mod:`.finediving`, :mod:`.manifest` (a user's CSV). Each
``load`` checks that every sample's frame folder or video exists (``check_paths=True``), and takes
a media root of None to read annotations only (``tpt data-info``).

Errors name the file and the row:

* :class:`AnnotationError` (a ValueError): malformed annotation file or row;
* :class:`MissingMediaError` (an AnnotationError *and* a FileNotFoundError): a row pointing nowhere;
* ``FileNotFoundError``: a missing annotation file; ``UnsafePickleError`` (ValueError): a pickle
  that is not plain data.
"""

from __future__ import annotations

import os

# AQA-7's action classes, in the annotation files' order (class id 1..6). A plain constant here so
# that code which only validates a class name (the config) need not import the adapter.
AQA7_CLASSES = ("diving", "gym_vault", "ski_big_air", "snowboard_big_air", "sync_diving_3m", "sync_diving_10m")


class AnnotationError(ValueError):
    """A malformed annotation file or row; the message names the file and the row."""


class MissingMediaError(AnnotationError, FileNotFoundError):
    """An annotation row whose frame folder or video does not exist."""


def require_file(path: str, what: str) -> str:
    """``path`` if it is a file, else FileNotFoundError saying which annotation file is missing."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: {what} not found")
    return path


def check_media(path: str, annotation_file: str, row: str) -> None:
    """Raise :class:`MissingMediaError` if a sample's frame folder / video ``path`` does not exist."""
    if not os.path.exists(path):
        raise MissingMediaError(f"{annotation_file}, {row}: frame folder or video {path} does not exist")


def load(name: str, *args, **kwargs):
    """``load("mtl_aqa" | "aqa7" | "jigsaws" | "finediving" | "manifest", ...)`` → that adapter's ``load``."""
    from data_pipelines.datasets import aqa7, finediving, jigsaws, manifest, mtl_aqa  # noqa: PLC0415 (keeps imports light)

    adapters = {"mtl_aqa": mtl_aqa.load, "aqa7": aqa7.load, "jigsaws": jigsaws.load,
                "finediving": finediving.load, "manifest": manifest.load}
    if name not in adapters:
        raise ValueError(f"unknown dataset {name!r}; expected one of {sorted(adapters)}")
    return adapters[name](*args, **kwargs)


def split_pairs(path: str, what: str, parse) -> list[tuple]:
    """The keys of a split pickle (a list of 2-item entries, MTL-AQA's and FineDiving's layout).

    Args:
        path: the pickle, read with the restricted unpickler.
        what: the entry as the error message names it, e.g. ``"a (video, dive) pair"``.
        parse: ``parse(first, second) -> key``; raises TypeError / ValueError / OverflowError on a
            bad entry.

    Raises:
        AnnotationError: not a list, a bad entry, or a duplicate key; names the file and the entry.
    """
    from ..io import safe_pickle

    entries = safe_pickle.load(path)
    if not isinstance(entries, (list, tuple)):
        raise AnnotationError(f"{path}: expected a list of {what}s, got {type(entries).__name__}")
    keys = []
    for position, entry in enumerate(entries):
        try:
            first, second = entry
            keys.append(parse(first, second))
        except (TypeError, ValueError, OverflowError):
            raise AnnotationError(f"{path}, entry {position}: expected {what}, got {entry!r}") from None
    if len(set(keys)) != len(keys):
        duplicates = sorted({key for key in keys if keys.count(key) > 1})[:5]
        raise AnnotationError(f"{path}: duplicate dives {duplicates}")
    return keys


def record_number(record: dict, field: str, source: str, key) -> float:
    """``record[field]`` as a finite float; AnnotationError naming the file, the dive and the field
    when it is missing, not a number, or not finite."""
    import math

    if not isinstance(record, dict) or field not in record:
        raise AnnotationError(f"{source}, dive {key}: missing field '{field}'")
    try:
        value = float(record[field])
    except (TypeError, ValueError):
        raise AnnotationError(f"{source}, dive {key}: field '{field}' is not a number: {record[field]!r}") from None
    if not math.isfinite(value):
        raise AnnotationError(f"{source}, dive {key}: field '{field}' is not finite: {value}")
    return value
