"""Built-in synthetic action-quality data at clip-feature level, and in-memory tf.data pipelines.

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

The dataset helpers build batches of the :mod:`tpt_keras.model` contract from such arrays:
:func:`pair_dataset` (one random same-group exemplar per query, re-drawn every epoch) and
:func:`eval_dataset` (up to ``num_exemplars`` random same-group training exemplars per test video,
masked when the group is smaller).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

QUALITY_DIRECTIONS = ("alternating", "shared", "independent")


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


def make_synthetic_features(num_videos: int, num_clips: int = 20, feature_dim: int = 1024,
                            num_phases: int = 5, seed: int = 0, *, world_seed: int = 1234,
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


def regression_targets(arrays: dict, use_difficulty: bool = True) -> np.ndarray:
    """(N,) float32 targets: final score / difficulty with DD, else the final score."""
    scores = np.asarray(arrays["scores"], np.float64)
    if use_difficulty:
        scores = scores / np.asarray(arrays["difficulty"], np.float64)
    return scores.astype(np.float32)


def _group_candidates(groups: np.ndarray, exclude_self: bool) -> tuple[np.ndarray, np.ndarray]:
    """(N, G) padded same-group candidate indices and (N,) counts (itself only if alone)."""
    groups = np.asarray(groups)
    rows = []
    for i, group in enumerate(groups):
        members = np.flatnonzero(groups == group)
        if exclude_self and len(members) > 1:
            members = members[members != i]
        rows.append(members)
    width = max(len(row) for row in rows)
    table = np.zeros((len(rows), width), np.int64)
    for i, row in enumerate(rows):
        table[i, :len(row)] = row
    return table, np.asarray([len(row) for row in rows], np.int64)


def pair_dataset(arrays: dict, batch_size: int, seed: int = 0, use_difficulty: bool = True,
                 shuffle: bool = True, drop_remainder: bool = False) -> tf.data.Dataset:
    """Training pairs: every video once per epoch as query, with a random same-group exemplar
    (not itself unless alone in its group), re-drawn each epoch; deterministic given ``seed``.

    Returns:
        ``tf.data.Dataset`` of dicts: "query", "exemplar" (B, T, D) float32, "query_score",
        "exemplar_score" (B,) targets, "query_difficulty" (B,).
    """
    features = tf.constant(arrays["features"], tf.float32)
    targets = tf.constant(regression_targets(arrays, use_difficulty))
    difficulty = tf.constant(np.asarray(arrays["difficulty"], np.float32))
    table, counts = _group_candidates(arrays["groups"], exclude_self=True)
    table, counts = tf.constant(table), tf.constant(counts)
    num_videos = len(arrays["features"])

    indices = tf.data.Dataset.range(num_videos)
    if shuffle:
        indices = indices.shuffle(num_videos, seed=seed, reshuffle_each_iteration=True)
    randoms = tf.data.Dataset.random(seed=seed + 1)

    def make_pair(index, random):
        pick = tf.math.floormod(random, counts[index])
        partner = table[index, pick]
        return {
            "query": tf.gather(features, index),
            "exemplar": tf.gather(features, partner),
            "query_score": tf.gather(targets, index),
            "exemplar_score": tf.gather(targets, partner),
            "query_difficulty": tf.gather(difficulty, index),
        }

    dataset = tf.data.Dataset.zip((indices, randoms)).map(make_pair)
    return dataset.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)


def eval_dataset(train_arrays: dict, test_arrays: dict, num_exemplars: int = 10,
                 batch_size: int = 8, seed: int = 0, use_difficulty: bool = True) -> tf.data.Dataset:
    """Evaluation batches: each test video with up to ``num_exemplars`` random training videos
    of its group (fixed by ``seed``); missing slots are padded and masked out.

    Returns:
        ``tf.data.Dataset`` of dicts: "query" (B, T, D), "exemplars" (B, E, T, D),
        "exemplar_scores" (B, E) targets, "exemplar_mask" (B, E), "query_difficulty" (B,),
        "score" (B,) the true final score.
    """
    rng = np.random.default_rng(seed)
    train_groups = np.asarray(train_arrays["groups"])
    exemplars = np.zeros((len(test_arrays["features"]), num_exemplars), np.int64)
    mask = np.zeros(exemplars.shape, np.float32)
    for i, group in enumerate(np.asarray(test_arrays["groups"])):
        members = np.flatnonzero(train_groups == group)
        if len(members) == 0:
            raise ValueError(f"test video {i} has group {group!r}, which no training video has.")
        chosen = rng.permutation(members)[:num_exemplars]
        exemplars[i, :len(chosen)] = chosen
        mask[i, :len(chosen)] = 1.0
    train_features = tf.constant(train_arrays["features"], tf.float32)
    train_targets = tf.constant(regression_targets(train_arrays, use_difficulty))
    dataset = tf.data.Dataset.from_tensor_slices({
        "query": np.asarray(test_arrays["features"], np.float32),
        "exemplar_index": exemplars,
        "exemplar_mask": mask,
        "query_difficulty": np.asarray(test_arrays["difficulty"], np.float32),
        "score": np.asarray(test_arrays["scores"], np.float32),
    })

    def gather_exemplars(element):
        index = element.pop("exemplar_index")
        element["exemplars"] = tf.gather(train_features, index)
        element["exemplar_scores"] = tf.gather(train_targets, index)
        return element

    return dataset.map(gather_exemplars).batch(batch_size).prefetch(tf.data.AUTOTUNE)
