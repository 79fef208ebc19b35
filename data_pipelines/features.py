"""The clip-feature cache: one ``(num_clips, feature_dim)`` float32 array per sample key.

Layout of a cache directory::

    cache/
      metadata.json          {"format": 1, "feature_dim": 1024, "num_clips": 20, "backbone": "...",
                              "dtype": "float32", ...}
      01_12.npy              one file per key (key percent-encoded, so any key is a safe name)
      ...

Writes are atomic (a temporary file in the same folder, fsync, then ``os.replace``), so a killed
extraction or a full disk never leaves a half-written array; :func:`extract_to_cache` skips keys
already present, so running it again resumes. Arrays are read with ``allow_pickle=False``.

Readers open a cache read-only (``FeatureCache(folder)``): a missing folder, missing keys, or a
cache made with other settings (``feature_dim``, ``num_clips``, ``backbone``, or the ``extra``
settings such as the video preprocessing) is one :class:`FeatureCacheError` naming the folder.
"""

from __future__ import annotations

import errno
import io
import json
import logging
import os
import tempfile
import urllib.parse
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

from .samples import Sample

logger = logging.getLogger(__name__)

METADATA_FILE = "metadata.json"
FORMAT_VERSION = 1


class FeatureCacheError(ValueError):
    """A feature cache that is missing, made with other settings, or cannot be written.
    The message names the cache folder."""


class MissingFeaturesError(FeatureCacheError, KeyError):
    """Keys without cached features; the message names the cache folder and the first keys."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


_MISSING = object()


def _flatten(value, prefix: str = "") -> dict:
    """``{"a": {"b": 1}} → {"a.b": 1}`` after a JSON round trip (tuples → lists), for comparison."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def settings_differences(recorded: dict, wanted: dict) -> list[str]:
    """``["video_options.resize_height: cache 256, asked 455", ...]`` for every field of ``wanted``
    (nested dicts compared field by field) that ``recorded`` lacks or holds with another value."""
    recorded = _flatten(json.loads(json.dumps({key: recorded.get(key) for key in wanted}, default=list)))
    wanted = _flatten(json.loads(json.dumps(wanted, default=list)))
    return [f"{name}: cache {recorded[name]!r} vs asked {value!r}" if name in recorded
            else f"{name}: not recorded in the cache, asked {value!r}"
            for name, value in sorted(wanted.items()) if recorded.get(name, _MISSING) != value]


class FeatureCache:
    """A folder of per-sample clip features.

    Opening never creates anything unless ``create=True`` (the extraction side): a reader given a
    misspelt or deleted folder gets a :class:`FeatureCacheError` naming it.

    Args:
        directory: the cache folder.
        feature_dim, num_clips, backbone: expected metadata; an existing cache must match them
            (None = accept what is recorded). A new cache records them (``feature_dim`` 1024 and
            ``num_clips`` 20 when None).
        extra: settings the features depend on (e.g. ``{"video_options": {...}}``, or a protocol
            recorded as a dict). A new cache records them; an existing one must hold the same values,
            compared field by field (nested dicts too) — a mismatch is a :class:`FeatureCacheError`
            naming every differing field.
        create: make the folder and its ``metadata.json`` when missing (extraction); otherwise a
            missing cache is an error.

    Raises:
        FeatureCacheError: no cache at ``directory`` (and not ``create``), unreadable metadata, or
            metadata different from what was asked.

    Example:
        >>> cache = FeatureCache("/tmp/feats", backbone="i3d_kinetics400_mixed5c", create=True)
        >>> cache.write("01_12", np.zeros((20, 1024), np.float32))
        >>> FeatureCache("/tmp/feats").read("01_12").shape
        (20, 1024)
    """

    def __init__(self, directory: str, feature_dim: int | None = None, num_clips: int | None = None,
                 backbone: str | None = None, extra: dict | None = None, *, create: bool = False):
        self.directory = os.fspath(directory)
        metadata_path = os.path.join(self.directory, METADATA_FILE)
        if os.path.exists(metadata_path):
            try:
                with open(metadata_path, encoding="utf-8") as handle:
                    metadata = json.load(handle)
                if not isinstance(metadata, dict):
                    raise ValueError("not a JSON object")
            except (OSError, ValueError) as error:
                raise FeatureCacheError(f"{metadata_path}: unreadable feature-cache metadata ({error})") from None
            asked = {name: wanted for name, wanted in
                     (("feature_dim", feature_dim), ("num_clips", num_clips), ("backbone", backbone))
                     if wanted is not None}
            differences = settings_differences(metadata, {**asked, **(extra or {})})
            if differences:
                kind = f"{metadata['backbone']} " if metadata.get("backbone") else ""
                raise FeatureCacheError(f"{self.directory}: {kind}feature cache made with other settings — "
                                        f"{'; '.join(differences)}; use another folder or extract again")
        elif create:
            os.makedirs(self.directory, exist_ok=True)
            metadata = {"format": FORMAT_VERSION, "feature_dim": feature_dim if feature_dim is not None else 1024,
                        "num_clips": num_clips if num_clips is not None else 20, "backbone": backbone,
                        "dtype": "float32", **(extra or {})}
            self._write_atomic(metadata_path, json.dumps(metadata, indent=2, sort_keys=True, default=list)
                               .encode("utf-8"), "metadata")
        else:
            what = "folder does not exist" if not os.path.isdir(self.directory) else f"folder has no {METADATA_FILE}"
            raise FeatureCacheError(f"{self.directory}: not a feature cache ({what}); check the path, or "
                                    "make one with `tpt extract-features`")
        self.metadata = metadata

    @property
    def feature_dim(self) -> int:
        return int(self.metadata["feature_dim"])

    @property
    def num_clips(self) -> int:
        return int(self.metadata["num_clips"])

    @property
    def shape(self) -> tuple[int, int]:
        """(num_clips, feature_dim) of every entry."""
        return (self.num_clips, self.feature_dim)

    def path(self, key: str) -> str:
        """File of ``key`` (percent-encoded name + ``.npy``)."""
        return os.path.join(self.directory, urllib.parse.quote(key, safe="") + ".npy")

    def has(self, key: str) -> bool:
        return os.path.isfile(self.path(key))

    def __contains__(self, key: str) -> bool:
        return self.has(key)

    def keys(self) -> list[str]:
        """Keys present, sorted."""
        return sorted(urllib.parse.unquote(name[:-4]) for name in os.listdir(self.directory)
                      if name.endswith(".npy") and not name.startswith("."))

    def __len__(self) -> int:
        return len(self.keys())

    def _check(self, key: str, array: np.ndarray, source: str) -> np.ndarray:
        if array.shape != self.shape:
            raise FeatureCacheError(f"{source}: feature of {key!r} has shape {array.shape}, cache expects {self.shape}")
        if not np.all(np.isfinite(array)):
            raise FeatureCacheError(f"{source}: feature of {key!r} has NaN or inf values")
        return array

    def write(self, key: str, array) -> None:
        """Store ``array`` (num_clips, feature_dim) as float32 under ``key``, atomically: a failed
        write (e.g. a full disk) leaves no file for ``key`` and raises :class:`FeatureCacheError`."""
        array = self._check(key, np.asarray(array, dtype=np.float32), self.directory)
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=False)
        self._write_atomic(self.path(key), buffer.getvalue(), f"features of {key!r}")

    def read(self, key: str) -> np.ndarray:
        """float32 (num_clips, feature_dim) of ``key``; :class:`MissingFeaturesError` when absent."""
        path = self.path(key)
        if not os.path.isfile(path):
            self.require([key])
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise FeatureCacheError(f"{path}: unreadable feature file ({error})") from None
        return self._check(key, array.astype(np.float32, copy=False), path)

    def missing(self, keys: Sequence[str]) -> list[str]:
        """The keys of ``keys`` without cached features, in order."""
        if not os.path.isdir(self.directory):
            return list(keys)
        return [key for key in keys if not self.has(key)]

    def require(self, keys: Sequence[str]) -> None:
        """:class:`MissingFeaturesError` naming the cache folder and the first missing keys, if any."""
        missing = self.missing(keys)
        if missing:
            shown = ", ".join(repr(key) for key in missing[:5]) + (" …" if len(missing) > 5 else "")
            raise MissingFeaturesError(
                f"{self.directory}: {len(missing)} of {len(keys)} sample(s) have no cached features "
                f"(first: {shown}); extract them with `tpt extract-features`, or leave them out")

    def read_many(self, keys: Sequence[str]) -> np.ndarray:
        """float32 (len(keys), num_clips, feature_dim); :class:`MissingFeaturesError` first if any
        key is absent."""
        self.require(keys)
        out = np.empty((len(keys), *self.shape), dtype=np.float32)
        for position, key in enumerate(keys):
            out[position] = self.read(key)
        return out

    def _write_atomic(self, path: str, data: bytes, what: str) -> None:
        """Write ``data`` to a temporary file in the folder, fsync, then ``os.replace`` it onto ``path``."""
        temporary = None
        try:
            handle, temporary = tempfile.mkstemp(dir=self.directory, prefix=".tmp-")
            with os.fdopen(handle, "wb") as stream:
                stream.write(data)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temporary, path)
        except OSError as error:
            if temporary is not None and os.path.exists(temporary):
                os.remove(temporary)
            reason = "disk full" if error.errno == errno.ENOSPC else (error.strerror or str(error))
            raise FeatureCacheError(
                f"{self.directory}: could not write {what} ({reason}); the cache keeps every entry "
                "written before — free space or fix the folder and run again to resume") from None
        except BaseException:
            if temporary is not None and os.path.exists(temporary):
                os.remove(temporary)
            raise

    def __repr__(self) -> str:
        return f"FeatureCache({self.directory!r}, shape={self.shape}, backbone={self.metadata.get('backbone')!r})"


def split_by_cache(samples: Sequence[Sample], cache: FeatureCache) -> tuple[list[Sample], list[Sample]]:
    """``(samples with cached features, samples without)``, each in the given order — to leave out,
    everywhere and once, the samples an extraction with ``skip_bad`` could not decode."""
    missing = set(cache.missing([s.key for s in samples]))
    return [s for s in samples if s.key not in missing], [s for s in samples if s.key in missing]


class ExtractionReport(NamedTuple):
    """What :func:`extract_to_cache` did: keys written, keys already present, failures ``(key, message)``."""

    written: list[str]
    skipped_existing: list[str]
    failed: list[tuple[str, str]]


def extract_to_cache(samples: Sequence[Sample], cache: FeatureCache,
                     extract_fn: Callable[[np.ndarray], np.ndarray],
                     clips_fn: Callable[[Sample], np.ndarray], skip_bad: bool = False, progress: bool = True,
                     batch_size: int = 1) -> ExtractionReport:
    """Compute and cache clip features for every sample not cached yet (resumable).

    Args:
        samples: the samples (duplicated keys are done once).
        cache: destination.
        extract_fn: ``(batch, num_clips, clip_len, H, W, 3) float32 → (batch, num_clips, feature_dim)``.
        clips_fn: ``sample → (num_clips, clip_len, H, W, 3) float32``.
        skip_bad: a :class:`VideoDecodeError` is logged (naming the file), recorded in
            ``report.failed`` and skipped; otherwise it propagates.
        progress: show a tqdm bar.
        batch_size: videos per ``extract_fn`` call.

    Returns:
        :class:`ExtractionReport`.
    """
    from .decode import VideoDecodeError  # here: decode imports TensorFlow

    from tqdm.auto import tqdm

    written, existing, failed = [], [], []
    pending_keys, pending_clips = [], []
    seen = set()

    def flush():
        if not pending_clips:
            return
        features = np.asarray(extract_fn(np.stack(pending_clips).astype(np.float32, copy=False)))
        expected = (len(pending_clips), *cache.shape)
        if features.shape != expected:
            raise ValueError(f"extract_fn returned shape {features.shape}, expected {expected}")
        for key, feature in zip(pending_keys, features):
            cache.write(key, feature)
            written.append(key)
        pending_keys.clear()
        pending_clips.clear()

    bar = tqdm(samples, desc="extracting clip features", unit="video", disable=not progress)
    for sample in bar:
        if sample.key in seen:
            continue
        seen.add(sample.key)
        if cache.has(sample.key):
            existing.append(sample.key)
            continue
        try:
            clips = np.asarray(clips_fn(sample), dtype=np.float32)
        except VideoDecodeError as error:
            if not skip_bad:
                raise
            logger.warning("skipping %s (%s): %s", sample.key, sample.path, error)
            failed.append((sample.key, str(error)))
            bar.set_postfix(failed=len(failed))
            continue
        pending_keys.append(sample.key)
        pending_clips.append(clips)
        if len(pending_clips) >= batch_size:
            flush()
    flush()
    bar.close()
    return ExtractionReport(written, existing, failed)
