"""Dataset adapters: annotation files → ``{"train": [Sample, ...], "test": [...]}``, and the
dataset registry (:mod:`.registry`: one :class:`Dataset` record per dataset; :func:`register` adds
one).

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

# The registry is plain Python (no adapter is imported), so the config can use it cheaply.
from data_pipelines.datasets.registry import (  # noqa: F401 (the package's public names)
    AQA7_CLASSES, JIGSAWS_TASKS, REGISTRY, Dataset, LoadRequest, get, names, preset_owner, register,
    releases, resolve, unregister)

ADAPTERS = ("mtl_aqa", "aqa7", "jigsaws", "finediving", "manifest")


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
    """``load("mtl_aqa" | "aqa7" | "jigsaws" | "finediving" | "manifest", ...)`` → that adapter's
    ``load`` (the adapter module, imported on first use)."""
    import importlib

    if name not in ADAPTERS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {sorted(ADAPTERS)}")
    return importlib.import_module(f"{__name__}.{name}").load(*args, **kwargs)


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
