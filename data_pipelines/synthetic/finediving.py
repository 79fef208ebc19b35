"""Synthetic clip features with the step timing and scores of real FineDiving dives.

Each synthetic video copies one real dive (read from the FineDiving annotation files by
:mod:`data_pipelines.datasets.finediving`): its per-frame step labels, its dive score, difficulty
and action type. Only the clip features are made up, so the parsing metric has real step timing
as ground truth:

* The dive's frames are sampled as the ``finediving`` protocol does (:func:`data_pipelines.video.steps.
  clip_frame_indices`: 103 frames spread over the whole dive, 20 clips of 8, stride 5), and
  :func:`data_pipelines.video.steps.clip_step_fractions` gives ``f[t, j]``, the fraction of clip t's
  frames in step j.
* A fixed "world" (``world_seed``) holds orthonormal directions in R^D: a **signature** s_l for
  every step label l (42 FineDiving step types, so the step identity is in the features) and one
  quality direction u.
* Step j of dive n has a quality ``q_nj = z_n + e_nj - mean_j(e_nj)`` with ``e_nj ~ N(0,
  quality_spread²)`` and ``z_n = (c_n - c_mean) / c_std``, c_n = dive_score / difficulty the
  dive's completeness (standardised over all the dives generated): the steps' mean quality is the
  completeness, exactly; single steps vary around it.
* Clip t: ``x_t = Σ_j f[t, j] (signature_scale · s_{label_j} + quality_scale · q_nj · (-1)^j u)
  + noise_scale · ε_t``. The alternating sign (as in :mod:`.synthetic_features`) makes the
  clip-mean a length-weighted, signed mix of the step qualities, which a holistic model cannot
  read back; a model that finds the steps can.

:func:`write_synthetic_finediving_cache` writes the features into a :class:`FeatureCache` and
returns the samples (real keys, scores, difficulties, action types and steps, ``path=""``).
"""

from __future__ import annotations

import numpy as np

from data_pipelines.video import steps as steps_lib
from data_pipelines.video.protocol import CLIP_LEN, CLIP_STRIDE, NUM_CLIPS
from data_pipelines.io.feature_cache import FeatureCache
from data_pipelines.samples import Sample

NUM_STEP_LABELS = 43  # FineDiving step labels are 1..42; row 0 is unused
NUM_TRAIN, NUM_TEST = 400, 150  # dives of the built-in dataset (``synthetic_finediving``)


def select_dives(splits: dict[str, list[Sample]], num_train: int | None, num_test: int | None
                 ) -> dict[str, list[Sample]]:
    """The first ``num_train`` training dives (split-file order), and the first ``num_test`` test
    dives whose action type is among them (so every test dive has exemplars). None: all."""
    train = splits["train"][:num_train] if num_train is not None else list(splits["train"])
    types = {s.group for s in train}
    test = [s for s in splits["test"] if s.group in types]
    return {"train": train, "test": test[:num_test] if num_test is not None else test}


def world_directions(feature_dim: int, world_seed: int = 1234) -> tuple[np.ndarray, np.ndarray]:
    """The fixed world: (NUM_STEP_LABELS, D) step-label signatures and the (D,) quality
    direction, orthonormal."""
    if feature_dim < NUM_STEP_LABELS + 1:
        raise ValueError(f"feature_dim must be at least {NUM_STEP_LABELS + 1} (one direction per "
                         f"FineDiving step label and one for quality); received {feature_dim}.")
    world = np.random.default_rng(world_seed)
    directions, _ = np.linalg.qr(world.standard_normal((feature_dim, NUM_STEP_LABELS + 1)))
    return directions.T[:NUM_STEP_LABELS], directions.T[NUM_STEP_LABELS]


def make_step_features(dives: list[Sample], feature_dim: int = 64, num_clips: int = NUM_CLIPS,
                       clip_len: int = CLIP_LEN, clip_stride: int = CLIP_STRIDE, seed: int = 0, *,
                       world_seed: int = 1234, signature_scale: float = 2.0,
                       quality_scale: float = 1.0, quality_spread: float = 0.5,
                       noise_scale: float = 0.25, completeness_stats: tuple[float, float] | None = None
                       ) -> dict:
    """Clip features for ``dives`` (samples with ``steps``; see the module docstring).

    Args:
        dives: N samples with step labels, scores and difficulties.
        feature_dim: D (at least ``NUM_STEP_LABELS + 1``).
        num_clips, clip_len, clip_stride: the clip grid (linspace sampling over the whole dive).
        seed: seed of the step qualities and the noise.
        world_seed: seed of the signatures and the quality direction.
        signature_scale, quality_scale, quality_spread, noise_scale: feature magnitudes.
        completeness_stats: (mean, std) used to standardise the completeness; default those of
            ``dives``.

    Returns:
        dict with "features" (N, T, D) float32, "boundaries" (list of N (J_n - 1,) float64 step
        boundaries in clip units), "clip_steps" (N, T) int64 step ordinal per clip, "qualities"
        (list of N (J_n,) float64).
    """
    signatures, quality_dir = world_directions(feature_dim, world_seed)
    completeness = np.array([s.score / s.difficulty for s in dives], np.float64)
    mean, std = completeness_stats or (completeness.mean(), completeness.std())
    z = (completeness - mean) / max(std, 1e-8)
    rng = np.random.default_rng(seed)
    features = np.empty((len(dives), num_clips, feature_dim), np.float32)
    boundaries, clip_steps, qualities = [], np.empty((len(dives), num_clips), np.int64), []
    for n, dive in enumerate(dives):
        if not dive.steps:
            raise ValueError(f"dive {dive.key} has no step labels")
        labels = np.array([label for label, _ in dive.steps])
        if labels.min() < 1 or labels.max() >= NUM_STEP_LABELS:
            raise ValueError(f"dive {dive.key}: step labels must be 1..{NUM_STEP_LABELS - 1}, got {labels}")
        num_frames = sum(length for _, length in dive.steps)  # the folder holds the labelled frames
        indices = steps_lib.clip_frame_indices(num_frames, num_clips, clip_len, clip_stride)
        fractions = steps_lib.clip_step_fractions(dive.steps, indices)  # (T, J)
        noise = rng.normal(0.0, quality_spread, len(labels))
        quality = z[n] + noise - noise.mean()  # (J,), mean = z_n
        signs = (-1.0) ** np.arange(len(labels))
        per_step = (signature_scale * signatures[labels]
                    + quality_scale * (quality * signs)[:, None] * quality_dir[None, :])  # (J, D)
        features[n] = fractions @ per_step + noise_scale * rng.standard_normal((num_clips, feature_dim))
        boundaries.append(steps_lib.step_boundaries(dive.steps, indices))
        clip_steps[n] = np.argmax(fractions, axis=1)
        qualities.append(quality)
    return {"features": features, "boundaries": boundaries, "clip_steps": clip_steps,
            "qualities": qualities}


def write_synthetic_finediving_cache(cache_dir: str, splits: dict[str, list[Sample]], *,
                                     feature_dim: int = 64, num_clips: int = NUM_CLIPS,
                                     clip_len: int = CLIP_LEN, clip_stride: int = CLIP_STRIDE,
                                     num_train: int | None = NUM_TRAIN, num_test: int | None = NUM_TEST,
                                     seed: int = 0
                                     ) -> dict[str, list[Sample]]:
    """Write synthetic features for real FineDiving dives into a feature cache.

    Args:
        cache_dir: the cache folder (a cache made with other settings is refused).
        splits: the real dives, ``finediving.load(annotation_dir, None)``.
        feature_dim, num_clips, clip_len, clip_stride: the clip grid and feature size.
        num_train, num_test: how many dives (:func:`select_dives`; None: all).
        seed: train features use ``seed``, test features ``seed + 1``; one world.

    Returns:
        ``{"train": [Sample], "test": [Sample]}``: the real dives' keys, scores, difficulties,
        action types and steps, with ``path=""``.
    """
    chosen = select_dives(splits, num_train, num_test)
    settings = {"source": "finediving", "seed": seed, "num_train": len(chosen["train"]),
                "num_test": len(chosen["test"]), "grid": [clip_len, clip_stride]}
    cache = FeatureCache(cache_dir, feature_dim=feature_dim, num_clips=num_clips,
                         backbone="synthetic_finediving", extra=settings, create=True)
    train_completeness = np.array([s.score / s.difficulty for s in chosen["train"]])
    stats = (float(train_completeness.mean()), float(train_completeness.std()))
    result = {}
    for split, split_seed in (("train", seed), ("test", seed + 1)):
        dives = chosen[split]
        arrays = make_step_features(dives, feature_dim, num_clips, clip_len, clip_stride,
                                    seed=split_seed, completeness_stats=stats)
        for dive, feature in zip(dives, arrays["features"]):
            if not cache.has(dive.key):
                cache.write(dive.key, feature)
        result[split] = [Sample(key=s.key, path="", score=s.score, difficulty=s.difficulty,
                                group=s.group, split=split, steps=s.steps) for s in dives]
    return result



def write_from_annotations(cache_dir: str, annotation_dir: str, protocol, feature_dim: int, *,
                           num_train: int | None = NUM_TRAIN, num_test: int | None = NUM_TEST,
                           seed: int = 0) -> dict[str, list[Sample]]:
    """:func:`write_synthetic_finediving_cache` for the dives of the FineDiving annotation folder
    ``annotation_dir`` (annotations only), on the clip grid of ``protocol`` (a
    ``VideoProtocol`` sampling by linspace, as the features follow the whole dive)."""
    from data_pipelines.datasets import finediving

    if protocol.sampling != "linspace":
        raise ValueError("synthetic FineDiving features follow linspace sampling over the whole "
                         f"dive; this config's protocol samples by {protocol.sampling!r}")
    return write_synthetic_finediving_cache(
        cache_dir, finediving.load(annotation_dir, None), feature_dim=feature_dim,
        num_clips=protocol.num_clips, clip_len=protocol.clip_len, clip_stride=protocol.clip_stride,
        num_train=num_train, num_test=num_test, seed=seed)


def from_request(request) -> dict[str, list[Sample]]:
    """The ``synthetic_finediving`` dataset for a :class:`data_pipelines.datasets.LoadRequest`:
    the dives of the FineDiving folder ``request.path``, their features in ``request.cache_dir``."""
    return write_from_annotations(request.cache_dir, request.path, request.protocol,
                                  request.feature_dim)
