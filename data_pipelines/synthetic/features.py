"""Built-in synthetic action-quality data at clip-feature level, written as a feature cache.

The generator (:func:`make_synthetic_features`) draws videos of ``K`` ordered phases whose
quality sets the score, designed so that finding the temporal parts pays off:

* A fixed "world" (seeded by ``world_seed``) holds an orthonormal set of directions in R^D: one
  **signature** s_k per phase and the phase **quality directions** u_k. By default
  (``quality_direction="alternating"``) they are phase-specific but opposite: u_k = (-1)^k u, so
  that a good phase 1 and a good phase 2 point in opposite directions. ``"shared"`` uses u for
  every phase, ``"independent"`` a separate orthogonal direction per phase.
* Each video (seeded by ``seed``) cuts its T clips into K consecutive phases of random length
  (at least ``min_phase_len`` clips; the lengths are a uniformly random composition of T). Phase k
  of video n has a quality q_nk ~ N(0, 1).
* Clip t in phase k: ``x_t = signature_scale * s_k + quality_scale * q_nk * u_k
  + noise_scale * eps_t`` with eps_t ~ N(0, I_D).
* Raw score (the regression target with difficulty): ``clip(score_center + score_spread *
  sum_k w_k q_nk / ||w||, 0, score_max)`` with phase weights w (default all 1). Difficulty is drawn
  from ``difficulties``, independent of quality; the final score is raw x difficulty and the
  contrastive group is the difficulty (as a string), like MTL-AQA with DD.

Why holistic pooling fails: the mean over clips projects onto u as sum_k (-1)^k (len_k / T) q_nk,
a signed, *length-weighted* mix of the phase qualities with random weights, from which
sum_k w_k q_nk cannot be recovered: its Spearman correlation with the score is about 0.18
(T = 20, K = 5, phases of >= 2 clips; with ``"shared"`` directions it is still only about 0.89).
A part encoder that attends to each phase's signature reads every q_nk separately.

Train and test sets of the same world: same ``world_seed``, different ``seed``.

:func:`write_synthetic_cache` writes a train and a test set into a :class:`FeatureCache` and
returns their :class:`Sample` lists, so synthetic data goes through exactly the readers, pairing
and evaluation that real data uses.
"""

from __future__ import annotations

import numpy as np

from data_pipelines.io.feature_cache import FeatureCache
from data_pipelines.samples import Sample
from data_pipelines.video.protocol import NUM_CLIPS

QUALITY_DIRECTIONS = ("alternating", "shared", "independent")
# The built-in dataset (``synthetic``): videos of NUM_PHASES phases, its train and test sizes.
NUM_PHASES = 5
NUM_TRAIN, NUM_TEST = 400, 150


def _orthonormal_directions(feature_dim: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """(count, D) orthonormal rows."""
    if feature_dim < count:
        raise ValueError(f"feature_dim ({feature_dim}) must be at least {count} for the "
                         "synthetic directions.")
    q, _ = np.linalg.qr(rng.standard_normal((feature_dim, count)))
    return q.T


def random_phase_bounds(num_videos: int, num_clips: int, num_phases: int, min_phase_len: int,
                        rng: np.random.Generator) -> np.ndarray:
    """Phase boundaries of each video: uniformly random compositions of T into K parts >= min.

    Returns:
        (N, K + 1) int32, bounds[n, 0] = 0, bounds[n, K] = T; phase k covers clips
        [bounds[n, k], bounds[n, k + 1]).
    """
    extra = num_clips - num_phases * min_phase_len
    if extra < 0:
        raise ValueError(f"{num_clips} clips cannot hold {num_phases} phases of at least "
                         f"{min_phase_len} clips.")
    bounds = np.zeros((num_videos, num_phases + 1), np.int32)
    for n in range(num_videos):
        # Stars and bars: K - 1 bar positions among extra + K - 1 slots.
        bars = np.sort(rng.choice(extra + num_phases - 1, size=num_phases - 1, replace=False))
        extras = np.diff(np.concatenate([[-1], bars, [extra + num_phases - 1]])) - 1
        bounds[n, 1:] = np.cumsum(extras + min_phase_len)
    return bounds


def make_synthetic_features(num_videos: int, num_clips: int = NUM_CLIPS, *, feature_dim: int,
                            num_phases: int = NUM_PHASES, seed: int = 0, world_seed: int = 1234,
                            min_phase_len: int = 2, signature_scale: float = 2.0,
                            quality_scale: float = 1.0, noise_scale: float = 0.25,
                            quality_direction: str = "alternating", phase_weights=None,
                            difficulties=(3.0, 3.2, 3.4, 3.6), score_center: float = 15.0,
                            score_spread: float = 5.0, score_max: float = 30.0) -> dict:
    """Synthetic AQA videos at clip-feature level (see the module docstring for the model).

    Args:
        num_videos: N.
        num_clips: T.
        feature_dim: D.
        num_phases: K.
        seed: seed of the videos (phases, qualities, noise, difficulties).
        world_seed: seed of the signatures and quality directions (keep it equal across splits).
        min_phase_len: shortest phase, in clips.
        signature_scale, quality_scale, noise_scale: feature magnitudes.
        quality_direction: "alternating" (u_k = (-1)^k u), "shared" (u_k = u) or "independent"
            (orthogonal u_k).
        phase_weights: (K,) weights of the phase qualities in the score (default ones).
        difficulties: values the difficulty is drawn from uniformly.
        score_center, score_spread, score_max: raw score = clip(center + spread * z, 0, max).

    Returns:
        dict with "features" (N, T, D) float32, "scores" (N,) float32 final scores (raw x
        difficulty), "raw_scores" (N,) float32, "difficulty" (N,) float32, "groups" (N,) str,
        "qualities" (N, K) float32, "phase_bounds" (N, K + 1) int32.
    """
    if quality_direction not in QUALITY_DIRECTIONS:
        raise ValueError(f"quality_direction must be one of {QUALITY_DIRECTIONS}; received "
                         f"{quality_direction!r}.")
    world = np.random.default_rng(world_seed)
    count = num_phases + (num_phases if quality_direction == "independent" else 1)
    directions = _orthonormal_directions(feature_dim, count, world)
    signatures = directions[:num_phases]  # (K, D)
    if quality_direction == "independent":
        quality_dirs = directions[num_phases:]  # (K, D)
    else:
        signs = (-1.0) ** np.arange(num_phases) if quality_direction == "alternating" else (
            np.ones(num_phases))
        quality_dirs = signs[:, None] * directions[num_phases:]  # (K, D)
    weights = np.ones(num_phases) if phase_weights is None else np.asarray(phase_weights, float)
    if weights.shape != (num_phases,):
        raise ValueError(f"phase_weights must have {num_phases} entries; received {weights.shape}.")

    rng = np.random.default_rng(seed)
    bounds = random_phase_bounds(num_videos, num_clips, num_phases, min_phase_len, rng)
    qualities = rng.standard_normal((num_videos, num_phases))
    phase_of_clip = np.zeros((num_videos, num_clips), np.int64)
    for k in range(1, num_phases):
        phase_of_clip += np.arange(num_clips)[None, :] >= bounds[:, k:k + 1]
    clip_quality = np.take_along_axis(qualities, phase_of_clip, axis=1)  # (N, T)
    features = (signature_scale * signatures[phase_of_clip]
                + quality_scale * clip_quality[..., None] * quality_dirs[phase_of_clip]
                + noise_scale * rng.standard_normal((num_videos, num_clips, feature_dim)))
    z = qualities @ weights / np.linalg.norm(weights)
    raw = np.clip(score_center + score_spread * z, 0.0, score_max)
    difficulty = rng.choice(np.asarray(difficulties, np.float64), size=num_videos)
    return {
        "features": features.astype(np.float32),
        "scores": (raw * difficulty).astype(np.float32),
        "raw_scores": raw.astype(np.float32),
        "difficulty": difficulty.astype(np.float32),
        "groups": np.asarray([f"{d:g}" for d in difficulty]),
        "qualities": qualities.astype(np.float32),
        "phase_bounds": bounds,
    }


def write_synthetic_cache(cache_dir: str, num_train: int, num_test: int, *, feature_dim: int,
                          num_clips: int = NUM_CLIPS, num_phases: int = NUM_PHASES, seed: int = 0,
                          score_max: float = 30.0, use_difficulty: bool = True
                          ) -> dict[str, list[Sample]]:
    """Write a synthetic train set (``seed``) and test set (``seed + 1``) of one world into a
    feature cache; return ``{"train": [Sample], "test": [Sample]}``.

    Keys are ``synthetic_{split}_{index:05d}``; the group is the difficulty with
    ``use_difficulty``, else ``"all"``. The cache records the data settings, and a cache made
    with other settings is refused (a ``FeatureCacheError`` naming the folder and fields). Existing keys are reused.
    """
    settings = {"seed": seed, "num_phases": num_phases, "num_train": num_train,
                "num_test": num_test}
    cache = FeatureCache(cache_dir, feature_dim=feature_dim, num_clips=num_clips,
                         backbone="synthetic", extra=settings, create=True)
    splits = {}
    for split, count, split_seed in (("train", num_train, seed), ("test", num_test, seed + 1)):
        arrays = make_synthetic_features(count, num_clips=num_clips, feature_dim=feature_dim,
                                         num_phases=num_phases, seed=split_seed,
                                         score_max=score_max)
        items = []
        for index in range(count):
            key = f"synthetic_{split}_{index:05d}"
            if not cache.has(key):
                cache.write(key, arrays["features"][index])
            items.append(Sample(key=key, path="", score=float(arrays["scores"][index]),
                                difficulty=float(arrays["difficulty"][index]),
                                group=str(arrays["groups"][index]) if use_difficulty else "all",
                                split=split))
        splits[split] = items
    return splits


def from_request(request) -> dict[str, list[Sample]]:
    """The ``synthetic`` dataset for a :class:`data_pipelines.datasets.LoadRequest`: the built-in
    train and test sets written to ``request.cache_dir`` with the request's feature size, clip
    count, score range and difficulty grouping."""
    return write_synthetic_cache(request.cache_dir, NUM_TRAIN, NUM_TEST,
                                 feature_dim=request.feature_dim, num_clips=request.protocol.num_clips,
                                 score_max=request.score_max, use_difficulty=request.use_difficulty)
