"""The files of a run folder (:class:`RunPaths`), written crash-safe, its training log, and its lock.

Every file of a run folder is written **atomically**: into a temporary file in the same folder,
flushed to disk (``fsync``), then renamed over the old one (``os.replace``) and the folder entry
flushed. A kill at any moment leaves either the old file or the new one, never half a file; the
previous good version stays until the new one is complete.

A run folder is **locked** while a run trains in it: an OS file lock (``flock``) on
``RUN/.lock``, released by the OS when the process ends, however it ends. A second ``tpt train``
on the same folder stops with ``RUN is in use by process N``.

A full disk (``ENOSPC``) while writing becomes a :class:`DiskFullError` naming the file; the
temporary file is removed and the old file stays.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import os

import numpy as np

from tpt_keras.config import TPTConfig


class DiskFullError(OSError):
    """No space left while writing a run-folder file (the old file is kept)."""


class RunInUseError(RuntimeError):
    """Another process trains in this run folder."""


def _fsync_folder(folder: str) -> None:
    try:
        descriptor = os.open(folder or ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def _temporary_name(path: str) -> str:
    """``folder/.name.tmp-PID.ext``: same folder (so the rename is atomic), same extension
    (Keras chooses the format by it), hidden and marked as temporary."""
    folder, name = os.path.split(path)
    stem, dot, suffix = name.partition(".")
    return os.path.join(folder, f".{stem}.tmp-{os.getpid()}{dot}{suffix}")


@contextlib.contextmanager
def atomic_path(path: str):
    """Yield a temporary path to write ``path``'s new content to; on success it replaces
    ``path`` atomically, on any error it is removed and ``path`` is untouched.

    Example:
        >>> with atomic_path("runs/x/best.keras") as tmp:
        ...     model.save(tmp)
    """
    path = os.fspath(path)
    temporary = _temporary_name(path)
    try:
        yield temporary
        descriptor = os.open(temporary, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        os.replace(temporary, path)
    except BaseException as error:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        if _is_disk_full(error):
            raise DiskFullError(errno.ENOSPC, f"{path}: no space left on the device while writing "
                                "it (the previous version is kept); free some space and run the "
                                "same command again") from None
        raise
    _fsync_folder(os.path.dirname(path))


def _is_disk_full(error: BaseException) -> bool:
    """ENOSPC, also when a library (h5py, zipfile) wrapped it in another exception."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, DiskFullError):
            return False  # already reported
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "No space left on device" in str(error):
            return True
        error = error.__cause__ or error.__context__
    return False


def write_text(path: str, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as temporary:
        with open(temporary, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)


def write_json(path: str, value, indent: int | None = 1) -> None:
    """Write ``value`` as JSON to ``path`` atomically."""
    write_text(path, json.dumps(value, indent=indent) + "\n")


def read_json(path: str):
    """The JSON value in ``path``; a ValueError naming the file when it is not valid JSON."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not valid JSON ({error}); the file is damaged — delete the "
                         "run folder to start over") from None


def _in_use(folder: str, owner: str) -> RunInUseError:
    return RunInUseError(f"{folder} is in use by process {owner} (another `tpt train` is running "
                         "in it); wait for it or use another --output")


class RunLock:
    """An exclusive OS lock on ``folder/.lock`` (the file holds the owner's process id).

    Use as a context manager; raises :class:`RunInUseError` naming the folder and the process
    that holds it. The OS drops the lock when the process exits, even after ``kill -9``."""

    def __init__(self, folder: str):
        self.folder = folder
        self.path = os.path.join(folder, ".lock")
        self._handle = None

    def __enter__(self):
        import fcntl

        os.makedirs(self.folder, exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            owner = handle.read().strip() or "?"
            handle.close()
            raise _in_use(self.folder, owner) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._handle = handle
        return self

    def __exit__(self, *exc):
        import fcntl

        if self._handle is not None:
            fcntl.flock(self._handle.fileno(), fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None
        return False


def check_unlocked(folder: str) -> None:
    """Raise :class:`RunInUseError` when another process holds ``folder``'s lock; creates and
    changes nothing (a quick check before a run starts; :class:`RunLock` takes the lock)."""
    import fcntl

    path = os.path.join(folder, ".lock")
    if not os.path.exists(path):
        return
    with open(path, encoding="utf-8") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise _in_use(folder, handle.read().strip() or "?") from None
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def remove_temporaries(folder: str) -> list[str]:
    """Delete the temporary files a killed writer left in ``folder`` (call under the lock)."""
    removed = []
    if not os.path.isdir(folder):
        return removed
    for name in os.listdir(folder):
        if name.startswith(".") and ".tmp-" in name:
            with contextlib.suppress(OSError):
                os.remove(os.path.join(folder, name))
                removed.append(name)
    return removed


class RunPaths:
    """The files of one run folder (see the package docstring of :mod:`tpt_keras.experiment`)."""

    def __init__(self, root: str):
        self.root = root
        self.config = os.path.join(root, "config.json")
        self.samples = os.path.join(root, "samples.json")
        self.data = os.path.join(root, "data.json")
        self.best = os.path.join(root, "best.keras")
        self.last = os.path.join(root, "last.keras")
        self.backup = os.path.join(root, "backup")
        self.log = os.path.join(root, "log.csv")
        self.tensorboard = os.path.join(root, "tensorboard")


def read_log(log_csv: str) -> list[dict]:
    """The rows of a run's ``log.csv`` ([] when absent)."""
    if not os.path.exists(log_csv):
        return []
    try:
        with open(log_csv, newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))
    except (UnicodeDecodeError, csv.Error) as error:
        raise ValueError(f"{log_csv}: unreadable training log ({error}); delete the run folder "
                         "to start over") from None


def write_log(log_csv: str, rows: list[dict], columns: list[str]) -> None:
    """Write ``rows`` as the run's ``log.csv`` (atomically), with ``columns``."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, extrasaction="ignore", restval="")
    writer.writeheader()
    writer.writerows(rows)
    write_text(log_csv, text.getvalue())


def truncate_log(log_csv: str, first_epoch: int) -> None:
    """Drop the rows of epochs ≥ ``first_epoch`` from the log (atomically): a run killed after
    logging an epoch but before backing it up runs that epoch again."""
    rows = read_log(log_csv)
    if not rows:
        return
    kept = [row for row in rows if int(row["epoch"]) < first_epoch]
    if len(kept) != len(rows):
        write_log(log_csv, kept, list(rows[0]))


def finite_or_none(text) -> float | None:
    """``text`` as a float when it is a finite number, else None."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) else None


def best_logged(log_csv: str, column: str = "val_spearman") -> float | None:
    """The best (max) finite value of ``column`` in the log, or None (NaN epochs never count)."""
    values = [v for v in (finite_or_none(row.get(column)) for row in read_log(log_csv)) if v is not None]
    return max(values) if values else None


def finished_results(paths: RunPaths) -> dict:
    """Validation metrics of the logged epochs: ``best`` (highest finite Spearman, None if none
    was finite), ``last``, ``epochs``; each with ``epoch``, ``spearman``, ``r_l2`` and
    ``spread_ratio`` (std of the predictions over std of the targets; None where not logged)."""
    rows = read_log(paths.log)
    if not rows:
        raise ValueError(f"{paths.log}: no finished epoch logged")
    pick = lambda row: {"epoch": int(row["epoch"]) + 1, "spearman": float(row["val_spearman"]),  # noqa: E731
                        "r_l2": float(row["val_r_l2"]),
                        "spread_ratio": finite_or_none(row.get("val_spread_ratio"))}
    finite = [row for row in rows if finite_or_none(row.get("val_spearman")) is not None]
    best = max(finite, key=lambda row: float(row["val_spearman"])) if finite else None
    return {"best": pick(best) if best else None, "last": pick(rows[-1]), "epochs": len(rows)}


# A run's config.json without these fields was trained one batch per update, with each interval's
# mean over the whole batch and the last partial batch dropped: read it as such, so that it
# resumes as it trained (the fields' defaults are the faithful presets' update).
UPDATE_OF_RUNS_WITHOUT_THE_FIELDS = {"accumulate_steps": 1, "loss_normalization": "global",
                                     "keep_last_batch": False}


def load_saved_config(path: str) -> TPTConfig:
    """The ``config.json`` of a run; a damaged file is named."""
    values = read_json(path)  # a damaged file is named
    missing = {key: value for key, value in UPDATE_OF_RUNS_WITHOUT_THE_FIELDS.items()
               if isinstance(values, dict) and key not in values}
    if not missing:
        return TPTConfig.load(path)
    try:
        return TPTConfig.from_dict({**values, **missing})
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
