"""A user's own dataset: a CSV manifest → samples.

Format (UTF-8, comma-separated, header row required)::

    path,score,difficulty,group,split
    videos/dive_001.mp4,78.5,3.2,3.2,train
    frames/dive_002,64.0,2.8,2.8,test

=============  ========  ====================================================================
column         required  meaning
=============  ========  ====================================================================
path           yes       frame folder, .gif or video; relative paths are resolved against the
                         CSV's folder
score          yes       judged final score (a number)
difficulty     no        degree of difficulty, > 0 (default 1.0)
group          no        contrastive group for exemplar choice (default ``all``)
split          no        ``train`` / ``test`` / any name (default ``train``)
key            no        unique sample id (default: ``path`` as written in the CSV)
=============  ========  ====================================================================

Blank lines are skipped. Any other column, a missing required value, a non-numeric, non-finite
or absurd score or difficulty (magnitude above ``MAX_ABS_VALUE``), bytes that are not UTF-8, a
duplicate key, or (with ``check_paths``) a path that does not exist raises an error naming the CSV
and its line number. A manifest without ``train`` rows is refused as a whole, and so is one whose
``val`` or ``test`` split has a single row (Spearman's ρ needs two videos).
"""

from __future__ import annotations

import csv
import io
import math
import os

from data_pipelines.samples import Sample
from data_pipelines.datasets import AnnotationError, check_media, require_file

REQUIRED_COLUMNS = ("path", "score")
OPTIONAL_COLUMNS = ("difficulty", "group", "split", "key")
# No judged score or difficulty comes near this; larger values are typing errors (and overflow
# float32 once divided or squared).
MAX_ABS_VALUE = 1e6


def _number(text: str, column: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise AnnotationError(f"{where}: column '{column}' is not a number: {text!r}") from None
    if not math.isfinite(value):
        raise AnnotationError(f"{where}: column '{column}' is not finite: {text!r}")
    if abs(value) > MAX_ABS_VALUE:
        raise AnnotationError(f"{where}: column '{column}' is {text}, beyond ±{MAX_ABS_VALUE:g}; not a judged value")
    return value


def _read_text(csv_path: str) -> str:
    """The CSV's text (UTF-8, optional BOM); AnnotationError naming the line of a non-UTF-8 byte."""
    with open(csv_path, "rb") as handle:
        data = handle.read()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[:error.start].count(b"\n") + 1
        raise AnnotationError(f"{csv_path}, line {line}: byte 0x{data[error.start]:02x} is not UTF-8; "
                              "save the manifest as UTF-8") from None


def _check_splits(csv_path: str, result: dict, lines: dict) -> None:
    """A training split, and ``val`` / ``test`` splits of 0 or ≥ 2 rows (they select and report a
    model by Spearman's ρ, undefined for one video). ``lines``: the CSV line of each sample key."""
    if not result["train"]:
        found = ", ".join(f"{len(v)} {k!r}" for k, v in result.items() if v)
        raise AnnotationError(f"{csv_path}: the manifest has no training rows (split 'train'); found {found}")
    for split in ("val", "test"):
        if len(result.get(split, ())) != 1:
            continue
        raise AnnotationError(f"{csv_path}, line {lines[result[split][0].key]}: the only {split!r} row; "
                              "Spearman's ρ needs at least 2 videos to validate and evaluate: mark at "
                              f"least one more row {split!r}")


def read_rows(csv_path: str, required=REQUIRED_COLUMNS, allowed=REQUIRED_COLUMNS + OPTIONAL_COLUMNS):
    """The non-blank rows of a manifest-like CSV, in file order: ``(line, values, path)`` with
    the values stripped and ``path`` resolved against the CSV's folder. The header must hold the
    ``required`` columns and (unless ``allowed`` is None) no column outside ``allowed``; every
    problem is an :class:`AnnotationError` naming the file and the line."""
    csv_path = require_file(csv_path, "manifest CSV")
    base = os.path.dirname(os.path.abspath(csv_path))
    with io.StringIO(_read_text(csv_path), newline="") as handle:
        reader = csv.DictReader(handle)
        header = [name.strip() for name in (reader.fieldnames or [])]
        missing = [name for name in required if name not in header]
        if missing:
            raise AnnotationError(f"{csv_path}, line 1: header {header} lacks required column(s) {missing}")
        unknown = [name for name in header if allowed is not None and name not in allowed]
        if unknown:
            raise AnnotationError(f"{csv_path}, line 1: unknown column(s) {unknown}; allowed {list(allowed)}")
        reader.fieldnames = header
        for row in reader:
            where = f"{csv_path}, line {reader.line_num}"
            if None in row:
                raise AnnotationError(f"{where}: more values than columns")
            values = {name: (value or "").strip() for name, value in row.items()}
            if not any(values.values()):
                continue
            for name in required:
                if not values.get(name):
                    raise AnnotationError(f"{where}: empty required column '{name}'")
            path = values["path"]
            yield reader.line_num, values, path if os.path.isabs(path) else os.path.normpath(os.path.join(base, path))


def number(values: dict, column: str, csv_path: str, line: int) -> float | None:
    """A row's numeric column (finite, of a judged magnitude), or None when it is empty."""
    return _number(values[column], column, f"{csv_path}, line {line}") if values.get(column) else None


def load(csv_path: str, check_paths: bool = True) -> dict[str, list[Sample]]:
    """Read a manifest CSV.

    Args:
        csv_path: the manifest.
        check_paths: raise :class:`MissingMediaError` for a row whose path does not exist.

    Returns:
        ``{split: [Sample, ...]}`` in file order, always with ``"train"`` and ``"test"`` (maybe empty).
    """
    result: dict[str, list[Sample]] = {"train": [], "test": []}
    seen: dict[str, int] = {}
    for line, values, resolved in read_rows(csv_path):
        where = f"{csv_path}, line {line}"
        score = number(values, "score", csv_path, line)
        difficulty = number(values, "difficulty", csv_path, line)
        difficulty = 1.0 if difficulty is None else difficulty
        if difficulty <= 0:
            raise AnnotationError(f"{where}: difficulty must be > 0, got {difficulty}")
        if check_paths:
            check_media(resolved, csv_path, f"line {line}")
        key = values.get("key") or values["path"]
        if key in seen:
            raise AnnotationError(f"{where}: duplicate key {key!r} (first on line {seen[key]})")
        seen[key] = line
        split = values.get("split") or "train"
        sample = Sample(key=key, path=resolved, score=score, difficulty=difficulty,
                        group=values.get("group") or "all", split=split)
        result.setdefault(split, []).append(sample)
    if not seen:
        raise AnnotationError(f"{csv_path}: no samples")
    _check_splits(csv_path, result, seen)
    return result


def from_request(request) -> dict[str, list[Sample]]:
    """:func:`load` for a :class:`data_pipelines.datasets.LoadRequest` (the registry's entry)."""
    return load(request.path, check_paths=request.check_paths)
