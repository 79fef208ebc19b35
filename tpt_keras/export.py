"""TF Serving export: a SavedModel that scores raw video frames, exemplar bank baked in.

Layout: ``saved_models/<name>/<version>/`` (what TF Serving's model server loads). Signatures:

``serving_default``
    inputs: ``frames`` uint8 ``(frames, height, width, 3)`` — any length and size;
    ``difficulty`` float32 ``(n,)`` with n = 0 (not given) or 1 (the degree of difficulty; required
    by models trained with difficulty degrees, ignored otherwise).
    outputs: ``score`` (), ``exemplar_scores`` (E,) the prediction from each exemplar,
    ``attention`` (T, K) the query's last-layer cross-attention (clips × parts),
    ``top_clips`` (K,) the clip each part attends to most, ``clip_frames`` (T,) the input frame at
    the middle of each clip (for pictures).
``relative_score``
    inputs: ``query_frames``, ``exemplar_frames`` (two videos as above).
    outputs: ``relative_score`` () the predicted s_query − s_exemplar in target units.

Inside a signature: temporal sampling (the run's protocol at test time: the window from frame 0,
or frames spread uniformly for linspace protocols and for videos shorter than the window), 20
clips of 8 frames, resize + centre crop + normalisation, the I3D backbone (the model's own in an
end-to-end run; the Kinetics-400 I3D that made the features in a features run), the temporal
parsing decoder, and the regressor against the baked exemplars: up to ``num_exemplars`` training
videos of the query's contrastive group (the group with the nearest difficulty under DD, else the
whole training set), chosen with the run's seed.

The SavedModel needs only TensorFlow to load (``tf.saved_model.load(path).signatures[...]``).
:class:`Serving` is also what ``tpt score`` runs in process, so a run folder and its export score
a video with the same code.
"""

from __future__ import annotations

import json
import os

import numpy as np
import tensorflow as tf

FRAMES_SPEC = tf.TensorSpec([None, None, None, 3], tf.uint8, name="frames")
DIFFICULTY_SPEC = tf.TensorSpec([None], tf.float32, name="difficulty")


class Serving(tf.Module):
    """Frames → score, with the exemplar bank as constants.

    Args:
        model: the trained :class:`tpt_keras.model.TPTModel`.
        backbone: clips (N, clip_len, H, W, 3) → (N, 1024); None if ``model`` has its own.
        bank_parts: (G, E, K, d) parts of the exemplars of each group.
        bank_targets: (G, E) their targets; bank_mask: (G, E) 1 for a real exemplar.
        bank_difficulty: (G,) the difficulty of each group (1.0 without DD).
        options: the run's :class:`data_pipelines.video_ops.VideoOptions`.
    """

    def __init__(self, model, backbone, bank_parts, bank_targets, bank_mask, bank_difficulty,
                 options, name="tpt_serving"):
        super().__init__(name=name)
        self.model = model
        self.backbone = backbone
        self._parts = tf.constant(bank_parts, tf.float32)
        self._targets = tf.constant(bank_targets, tf.float32)
        self._mask = tf.constant(bank_mask, tf.float32)
        self._difficulty = tf.constant(bank_difficulty, tf.float32)
        self._options = options
        self._use_difficulty = bool(model.config.use_difficulty)
        self.score = tf.function(self._score, input_signature=[FRAMES_SPEC, DIFFICULTY_SPEC])
        self.relative_score = tf.function(self._relative, input_signature=[
            tf.TensorSpec([None, None, None, 3], tf.uint8, name="query_frames"),
            tf.TensorSpec([None, None, None, 3], tf.uint8, name="exemplar_frames")])

    # -------------------------------------------------------------- pieces
    def _clips(self, frames):
        """uint8 (T, H, W, 3) → float32 (1, num_clips, clip_len, crop, crop, 3), and int32
        (num_clips,) the input frame at the middle of each clip."""
        from data_pipelines import video_ops

        # EnsureShape runs in the served graph: a loaded signature does not check ranks itself.
        frames = tf.ensure_shape(tf.convert_to_tensor(frames), [None, None, None, 3])
        num_frames = tf.shape(frames)[0]
        tf.debugging.assert_positive(num_frames, message="the video has no frames")
        tf.debugging.assert_greater_equal(tf.shape(frames)[1:3], 2,
                                          message="frames are smaller than 2×2 pixels")
        spec = self._options.spec
        indices = video_ops.tf_temporal_indices(num_frames, spec, spec.test_query_start)
        sampled = tf.gather(frames, indices)  # (num_frames, H, W, 3)
        sampled.set_shape([spec.num_frames, None, None, 3])
        clips = video_ops.frames_to_clips(sampled, self._options, training=False)
        middles = tf.gather(indices, np.arange(spec.num_clips) * spec.clip_stride + spec.clip_len // 2)
        return clips[tf.newaxis], middles  # (1, num_clips, clip_len, crop, crop, 3), (num_clips,)

    def _encode(self, frames):
        """Parts (1, K, d), attention (1, L, T, K) and each clip's middle frame index (T,)."""
        clips, middles = self._clips(frames)
        if self.backbone is not None:
            shape = tf.shape(clips)
            flat = tf.reshape(clips, tf.concat([[-1], shape[2:]], 0))  # (T, clip_len, crop, crop, 3)
            video = tf.reshape(self.backbone(flat, training=False), [1, shape[1], -1])  # (1, T, 1024)
        else:
            video = clips
        parts, attention = self.model.encode(video, training=False)
        return parts, attention, middles

    def _group(self, difficulty):
        if not self._use_difficulty:
            return tf.constant(0, tf.int32), tf.constant(1.0)
        tf.debugging.assert_equal(
            tf.size(difficulty), 1,
            message="this model was trained with difficulty degrees: pass difficulty=[DD]")
        value = tf.reshape(difficulty, [])
        tf.debugging.assert_positive(value, message="difficulty must be > 0")
        group = tf.cast(tf.argmin(tf.abs(self._difficulty - value)), tf.int32)
        return group, value

    # -------------------------------------------------------------- signatures
    def _score(self, frames, difficulty):
        from tpt_keras.model import aggregate_exemplar_scores

        parts, attention, middles = self._encode(frames)
        group, query_difficulty = self._group(difficulty)
        exemplar_parts = self._parts[group]  # (E, K, d)
        count = tf.shape(exemplar_parts)[0]
        query_parts = tf.repeat(parts, count, axis=0)  # (E, K, d)
        relative = self.model.relative_scores(exemplar_parts, query_parts)[tf.newaxis]  # (1, E)
        score, per_exemplar = aggregate_exemplar_scores(
            relative, self._targets[group][tf.newaxis], self._mask[group][tf.newaxis],
            tf.reshape(query_difficulty, [1]), self._use_difficulty)
        mask = self._mask[group] > 0
        last = attention[0, -1]  # (T, K)
        return {"score": score[0],
                "exemplar_scores": tf.boolean_mask(per_exemplar[0], mask),
                "attention": last,
                "top_clips": tf.argmax(last, axis=0, output_type=tf.int32),
                "clip_frames": middles}

    def _relative(self, query_frames, exemplar_frames):
        query_parts, _, _ = self._encode(query_frames)
        exemplar_parts, _, _ = self._encode(exemplar_frames)
        relative = self.model.relative_scores(exemplar_parts, query_parts)
        return {"relative_score": tf.reshape(relative, [])}


# ---------------------------------------------------------------------------------------------
def choose_exemplars(train_samples, use_difficulty: bool, num_exemplars: int, seed: int):
    """Up to ``num_exemplars`` training exemplars per contrastive group, for the export.

    Returns:
        indices (G, E) into ``train_samples``, mask (G, E) (groups with fewer exemplars repeat
        them with mask 0, like the evaluation's fill rule), difficulty (G,) (1 without DD), and
        the group names (G,). Without DD there is one group: the whole training set.
    """
    names = np.array([s.group for s in train_samples])
    groups = sorted(set(names)) if use_difficulty else ["all"]
    rng = np.random.default_rng(seed)
    indices, mask, difficulty = [], [], []
    for group in groups:
        members = np.arange(len(names)) if group == "all" else np.flatnonzero(names == group)
        chosen = rng.permutation(members)[:num_exemplars]
        mask.append((np.arange(num_exemplars) < len(chosen)).astype(np.float32))
        indices.append(np.resize(chosen, num_exemplars))  # repeat to fill (masked)
        difficulty.append(float(train_samples[chosen[0]].difficulty) if use_difficulty else 1.0)
    return np.stack(indices), np.stack(mask), np.array(difficulty, np.float32), groups


def serving_from_run(run_dir: str, which: str = "best", progress: bool = False) -> Serving:
    """Build the :class:`Serving` module of a run folder: the model, the backbone, and the
    chosen exemplars encoded once (only those: not the whole training set)."""
    from tpt_keras import experiment

    run = experiment.load_run(run_dir, which=which)
    backbone = None
    if run.model.backbone is None:
        made_by = experiment.feature_cache_backbone(run.features_dir)
        if made_by != experiment.BACKBONE_NAME:
            raise ValueError(f"{run_dir} was trained on features made by {made_by!r}, not by the "
                             "Kinetics I3D: there is no video → features path to export")
        backbone = experiment.build_backbone(run.config, "kinetics400", inference=True)
    train = run.splits["train"]
    indices, mask, difficulty, _ = choose_exemplars(train, run.config.use_difficulty,
                                                    run.config.num_exemplars, run.config.seed)
    used = np.unique(indices)  # each chosen exemplar encoded once
    bank = experiment.run_bank(run, [train[i] for i in used], progress=progress)
    rows = np.searchsorted(used, indices)  # (G, E) rows of the bank
    return Serving(run.model, backbone, bank.parts[rows], bank.targets[rows], mask, difficulty,
                   experiment.video_options(run.config))


def export_serving(serving: Serving, path: str) -> str:
    """Write ``serving`` as a SavedModel with the two signatures."""
    import keras

    archive = keras.export.ExportArchive()
    archive.track(serving.model)
    if serving.backbone is not None:
        archive.track(serving.backbone)
    archive.add_endpoint("serving_default", serving.score)
    archive.add_endpoint("relative_score", serving.relative_score)
    archive.write_out(path, verbose=False)
    return path


def export_run(run_dir: str, name: str = "tpt", version: int = 1, base_dir: str = "saved_models",
               which: str = "best") -> str:
    """Export a run folder to ``base_dir/name/version`` (TF Serving layout); returns the path."""
    path = os.path.join(base_dir, name, str(int(version)))
    if os.path.exists(path) and os.listdir(path):
        raise FileExistsError(f"{path} exists: choose another --version")
    serving = serving_from_run(run_dir, which=which, progress=True)
    export_serving(serving, path)
    with open(os.path.join(path, "tpt_export.json"), "w", encoding="utf-8") as handle:
        json.dump({"run": os.path.abspath(run_dir), "checkpoint": which,
                   "use_difficulty": serving.model.config.use_difficulty}, handle)
    return path
