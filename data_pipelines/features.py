"""The clip-feature cache: one ``(num_clips, feature_dim)`` float32 array per sample key.

Layout of a cache directory::

    cache/
      metadata.json          {"format": 1, "feature_dim": 1024, "num_clips": 20, "backbone": "...",
                              "dtype": "float32", ...}
      01_12.npy              one file per key (key percent-encoded, so any key is a safe name)
      ...

Writes are atomic (a temporary file in the same folder, then ``os.replace``), so a killed
extraction never leaves a half-written array; :func:`extract_to_cache` skips keys already present,
so running it again resumes. Arrays are read with ``allow_pickle=False``.
"""

from __future__ import annotations

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


class FeatureCache:
    """A folder of per-sample clip features.

    Args:
        directory: the cache folder (created if missing).
        feature_dim, num_clips, backbone: expected metadata. A new cache records them; an existing
            cache must match them (None = accept what is recorded). ``extra`` is merged into the
            metadata of a new cache (e.g. the protocol and resize used).

    Example:
        >>> cache = FeatureCache("/tmp/feats", backbone="i3d_kinetics400_mixed5c")
        >>> cache.write("01_12", np.zeros((20, 1024), np.float32))
        >>> cache.read("01_12").shape
        (20, 1024)
    """

    def __init__(self, directory: str, feature_dim: int | None = 1024, num_clips: int | None = 20,
                 backbone: str | None = None, extra: dict | None = None):
        self.directory = os.fspath(directory)
        os.makedirs(self.directory, exist_ok=True)
        metadata_path = os.path.join(self.directory, METADATA_FILE)
        if os.path.exists(metadata_path):
            try:
                with open(metadata_path, encoding="utf-8") as handle:
                    metadata = json.load(handle)
            except (OSError, ValueError) as error:
                raise ValueError(f"{metadata_path}: unreadable feature-cache metadata ({error})") from None
            for name, wanted in (("feature_dim", feature_dim), ("num_clips", num_clips), ("backbone", backbone)):
                if wanted is not None and metadata.get(name) != wanted:
                    raise ValueError(f"{metadata_path}: cache was written with {name}={metadata.get(name)!r}, "
                                     f"asked for {wanted!r}; use another directory")
        else:
            metadata = {"format": FORMAT_VERSION, "feature_dim": feature_dim if feature_dim is not None else 1024,
                        "num_clips": num_clips if num_clips is not None else 20, "backbone": backbone,
                        "dtype": "float32", **(extra or {})}
            self._write_atomic(metadata_path, json.dumps(metadata, indent=2, sort_keys=True).encode("utf-8"))
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
            raise ValueError(f"{source}: feature of {key!r} has shape {array.shape}, cache expects {self.shape}")
        if not np.all(np.isfinite(array)):
            raise ValueError(f"{source}: feature of {key!r} has NaN or inf values")
        return array

    def write(self, key: str, array) -> None:
        """Store ``array`` (num_clips, feature_dim) as float32 under ``key``, atomically."""
        array = self._check(key, np.asarray(array, dtype=np.float32), self.directory)
        handle, temporary = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".npy")
        try:
            with os.fdopen(handle, "wb") as stream:
                np.save(stream, array, allow_pickle=False)
            os.replace(temporary, self.path(key))
        except BaseException:
            if os.path.exists(temporary):
                os.remove(temporary)
            raise

    def read(self, key: str) -> np.ndarray:
        """float32 (num_clips, feature_dim) of ``key``; KeyError naming the file when absent."""
        path = self.path(key)
        if not os.path.isfile(path):
            raise KeyError(f"{path}: no cached features for {key!r}")
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise ValueError(f"{path}: unreadable feature file ({error})") from None
        return self._check(key, array.astype(np.float32, copy=False), path)

    def read_many(self, keys: Sequence[str]) -> np.ndarray:
        """float32 (len(keys), num_clips, feature_dim). KeyError listing every missing key first."""
        missing = [key for key in keys if not self.has(key)]
        if missing:
            shown = ", ".join(missing[:10]) + (" …" if len(missing) > 10 else "")
            raise KeyError(f"{self.directory}: {len(missing)} key(s) have no cached features: {shown}")
        out = np.empty((len(keys), *self.shape), dtype=np.float32)
        for position, key in enumerate(keys):
            out[position] = self.read(key)
        return out

    def _write_atomic(self, path: str, data: bytes) -> None:
        handle, temporary = tempfile.mkstemp(dir=self.directory, prefix=".tmp-")
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(temporary, path)

    def __repr__(self) -> str:
        return f"FeatureCache({self.directory!r}, shape={self.shape}, backbone={self.metadata.get('backbone')!r})"


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
