"""The exemplar bank: training videos encoded once, reused for every test video.

TPT predicts a test video's score from its relative score to up to 10 training exemplars. The
original evaluation runs the backbone on query *and* exemplar for each of the 10 pairs: 20 video
passes per test video. The parts of an exemplar do not depend on the query, so the bank encodes
every training video once (its K part vectors and its target score) and a test video then costs
one backbone pass plus 10 cheap regressor calls. Both paths give the same scores
(``benchmarks/inference.py`` measures it).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from data_pipelines import samples as samples_lib


@dataclasses.dataclass
class ExemplarBank:
    """Encoded training videos.

    Attributes:
        keys: (N,) sample keys.
        parts: (N, K, d) float32 part representations from ``model.encode``.
        targets: (N,) float32 regression targets (score / difficulty under DD).
        groups: (N,) contrastive group of each exemplar.
        difficulties: (N,) float32 degree of difficulty (1 where none).
    """

    keys: list
    parts: np.ndarray
    targets: np.ndarray
    groups: list
    difficulties: np.ndarray

    @classmethod
    def encode(cls, model, samples, videos, use_difficulty: bool, batch_size: int = 16,
               progress: bool = False) -> "ExemplarBank":
        """Encode ``samples`` whose inputs ``videos`` yields in the same order.

        Args:
            model: a :class:`tpt_keras.models.tpt_model.TPTModel`.
            samples: the training samples.
            videos: an iterable of input batches, (B, T, D) features or (B, T, clip_len, H, W, 3)
                clips, covering ``samples`` in order; or an array of all of them.
        """
        parts = encode_all(model, videos, batch_size=batch_size, progress=progress,
                           total=len(samples))
        if parts.shape[0] != len(samples):
            raise ValueError(f"encoded {parts.shape[0]} videos for {len(samples)} samples")
        return cls(keys=[s.key for s in samples], parts=parts,
                   targets=np.array([samples_lib.target(s, use_difficulty) for s in samples],
                                    np.float32),
                   groups=[s.group for s in samples],
                   difficulties=np.array([s.difficulty for s in samples], np.float32))


def encode_all(model, videos, batch_size: int = 16, progress: bool = False, total=None,
               with_attention: bool = False):
    """Parts of every video: (N, K, d) float32. ``videos`` is an array or an iterable of batches.
    With ``with_attention``: (parts, attention (N, L, T, K) float32)."""
    import tensorflow as tf
    from tqdm.auto import tqdm

    if isinstance(videos, np.ndarray):
        array = videos
        videos = (array[start:start + batch_size] for start in range(0, len(array), batch_size))
    encode = _compiled_encoder(model)
    outputs, maps = [], []
    with tqdm(total=total, desc="encoding videos", unit="video", disable=not progress) as bar:
        for batch in videos:
            parts, attention = encode(tf.convert_to_tensor(batch, tf.float32))
            outputs.append(np.asarray(parts, np.float32))
            if with_attention:
                maps.append(np.asarray(attention, np.float32))
            bar.update(len(outputs[-1]))
    if with_attention:
        return np.concatenate(outputs), np.concatenate(maps)
    return np.concatenate(outputs)


def _compiled_encoder(model):
    """One ``tf.function`` of ``model.encode`` (parts, attention) per model (batch size left free)."""
    from tpt_keras.models.compiled import cached_function

    return cached_function(model, "encode", lambda m, batch: m.encode(batch, training=False))


def predict_with_bank(model, bank: ExemplarBank, query_parts: np.ndarray, exemplar_indices,
                      exemplar_mask, query_difficulty, batch_size: int = 64):
    """Scores of test videos against their chosen exemplars in the bank.

    Args:
        model: the TPTModel that encoded the bank.
        bank: the exemplar bank.
        query_parts: (N, K, d) parts of the test videos.
        exemplar_indices: (N, E) int indices into the bank (e.g. from
            :func:`data_pipelines.tfdata.pairing.test_exemplars`).
        exemplar_mask: (N, E) 1 for a real exemplar, 0 for padding.
        query_difficulty: (N,) degree of difficulty of each test video.

    Returns:
        (scores (N,), per_exemplar (N, E)) float32, exactly the rule of ``predict_step``.
    """
    from tpt_keras.ops.exemplar_scores import aggregate_exemplar_scores

    exemplar_indices = np.asarray(exemplar_indices)
    count, num_exemplars = exemplar_indices.shape
    flat_query = np.repeat(query_parts, num_exemplars, axis=0)  # (N*E, K, d), query-major
    flat_exemplars = bank.parts[exemplar_indices.reshape(-1)]  # (N*E, K, d)
    relative = np.concatenate([
        np.asarray(model.relative_scores(flat_exemplars[i:i + batch_size],
                                         flat_query[i:i + batch_size]), np.float32)
        for i in range(0, len(flat_query), batch_size)]).reshape(count, num_exemplars)
    scores, per_exemplar = aggregate_exemplar_scores(
        relative, bank.targets[exemplar_indices], np.asarray(exemplar_mask, np.float32),
        np.asarray(query_difficulty, np.float32), model.config.use_difficulty)
    return np.asarray(scores), np.asarray(per_exemplar)
