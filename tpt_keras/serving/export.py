"""TF Serving export: a SavedModel that scores raw video frames, exemplar bank baked in.

Layout: ``saved_models/<name>/<version>/`` (what TF Serving's model server loads). Signatures:

``serving_default``
    inputs follow the model: ``frames`` uint8 ``(frames, height, width, 3)`` — any length and
    size — always; ``difficulty`` float32 ``(1,)`` only for a model trained with difficulty degrees
    (required; non-finite, ≤ 0 or outside [min/2, max×2] of the training difficulties is refused);
    ``group`` string ``()`` for a model without difficulty whose training set has several
    contrastive groups (one of them, required), and for a model with difficulty whose groups are
    not the difficulties (FineDiving: the dive number, e.g. ``"407c"``; ``""`` falls back to the
    group of the nearest difficulty). An unknown group fails with a message listing the known ones.
    outputs: ``score`` (), ``exemplar_scores`` (E,) the prediction from each exemplar,
    ``attention`` (T, K) the query's last-layer cross-attention (clips × parts),
    ``top_clips`` (K,) the clip each part attends to most, ``clip_frames`` (T,) the input frame at
    the middle of each clip (for pictures).
``relative_score``
    inputs: ``query_frames``, ``exemplar_frames`` (two videos as above).
    outputs: ``relative_score`` () the predicted s_query − s_exemplar in target units.

Inside a signature: temporal sampling by the run's ``config.protocol`` at test time (the query's
window from ``test_query_start``, or frames spread uniformly over the whole video for linspace
protocols and for videos shorter than the window), its clips, resize + centre crop + normalisation, the I3D backbone (the model's own in an
end-to-end run; the Kinetics-400 I3D that made the features in a features run), the temporal
parsing decoder, and the regressor against the baked exemplars: the fixed set of up to
``num_exemplars`` training videos of the query's contrastive group, drawn with the run's seed by
the rule ``tpt evaluate`` uses (:func:`data_pipelines.tfdata.pairing.group_exemplars`), so a test video
gets the same score from both. The group is the ``group`` input when there is one (and not
``""``), else the one with the nearest difficulty under DD, else the only group.

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
GROUP_SPEC = tf.TensorSpec([], tf.string, name="group")


def difficulty_range(train_difficulties) -> tuple[float, float]:
    """The difficulties a served model accepts: [min / 2, max × 2] of the training difficulties.

    A degree of difficulty far outside what the model was trained on is a typo or a unit error
    (1e30 would scale the score to 2e31), not a dive: the signature refuses it.
    """
    values = np.asarray(train_difficulties, np.float64)
    return float(values.min()) / 2.0, float(values.max()) * 2.0


def signature_inputs(use_difficulty: bool, groups, groups_are_difficulties: bool = True) -> list[str]:
    """The inputs of ``serving_default`` for a model: ``frames``, plus ``difficulty`` for a
    model trained with difficulty degrees, and ``group`` where the query's group picks its
    exemplars: without difficulty, when the training set has several groups (required); with
    difficulty, when the groups are not the difficulties themselves (FineDiving: the dive number;
    optional there: ``""`` picks the group of the nearest difficulty)."""
    if use_difficulty:
        return ["frames", "difficulty"] + ([] if groups_are_difficulties else ["group"])
    return ["frames", "group"] if len(groups) > 1 else ["frames"]


def groups_are_difficulties(train_samples) -> bool:
    """True when the contrastive group of a difficulty model is its difficulty (MTL-AQA): every
    group's members share one difficulty and no two groups share one. False for FineDiving, whose
    groups are dive numbers (one difficulty may hold several dive numbers, and back)."""
    by_group: dict[str, set] = {}
    for sample in train_samples:
        by_group.setdefault(sample.group, set()).add(float(sample.difficulty))
    values = [next(iter(v)) for v in by_group.values() if len(v) == 1]
    return len(values) == len(by_group) and len(set(values)) == len(values)


class Serving(tf.Module):
    """Frames → score, with the exemplar bank as constants.

    Args:
        model: the trained :class:`tpt_keras.models.tpt_model.TPTModel`.
        backbone: clips (N, clip_len, H, W, 3) → (N, 1024); None if ``model`` has its own.
        bank_parts: (G, E, K, d) parts of the exemplars of each group.
        bank_targets: (G, E) their targets; bank_mask: (G, E) 1 for a real exemplar.
        bank_difficulty: (G,) the difficulty of each group (1.0 without DD).
        protocol: the run's :class:`data_pipelines.video.protocol.VideoProtocol` (``config.protocol``).
        groups: (G,) the group names (see :func:`choose_exemplars`).
        difficulty_bounds: (low, high) accepted difficulties (:func:`difficulty_range`); None:
            from ``bank_difficulty``.
        groups_are_difficulties: with difficulty, whether the groups are the difficulties
            (:func:`groups_are_difficulties`); if not, the signature takes a ``group`` too.

    Attributes:
        inputs: the names of ``score``'s inputs (:func:`signature_inputs`).
    """

    def __init__(self, model, backbone, bank_parts, bank_targets, bank_mask, bank_difficulty,
                 protocol, groups=("all",), difficulty_bounds=None, groups_are_difficulties=True,
                 name="tpt_serving"):
        super().__init__(name=name)
        self.model = model
        self.backbone = backbone
        self._parts = tf.constant(bank_parts, tf.float32)
        self._targets = tf.constant(bank_targets, tf.float32)
        self._mask = tf.constant(bank_mask, tf.float32)
        self._difficulty = tf.constant(bank_difficulty, tf.float32)
        self._group_names = tf.constant(list(groups), tf.string)
        self._protocol = protocol
        self._use_difficulty = bool(model.config.use_difficulty)
        low, high = difficulty_bounds or difficulty_range(bank_difficulty)
        self._bounds = (float(low), float(high))
        self.groups = list(groups)
        self.inputs = signature_inputs(self._use_difficulty, self.groups, groups_are_difficulties)
        if self.inputs == ["frames", "difficulty", "group"]:
            self.score = tf.function(
                lambda frames, difficulty, group: self._score(frames, difficulty=difficulty, group=group),
                input_signature=[FRAMES_SPEC, DIFFICULTY_SPEC, GROUP_SPEC])
        elif "difficulty" in self.inputs:
            self.score = tf.function(lambda frames, difficulty: self._score(frames, difficulty=difficulty),
                                     input_signature=[FRAMES_SPEC, DIFFICULTY_SPEC])
        elif "group" in self.inputs:
            self.score = tf.function(lambda frames, group: self._score(frames, group=group),
                                     input_signature=[FRAMES_SPEC, GROUP_SPEC])
        else:
            self.score = tf.function(lambda frames: self._score(frames),
                                     input_signature=[FRAMES_SPEC])
        self.relative_score = tf.function(self._relative, input_signature=[
            tf.TensorSpec([None, None, None, 3], tf.uint8, name="query_frames"),
            tf.TensorSpec([None, None, None, 3], tf.uint8, name="exemplar_frames")])

    # -------------------------------------------------------------- pieces
    def _clips(self, frames):
        """uint8 (T, H, W, 3) → float32 (1, num_clips, clip_len, crop, crop, 3), and int32
        (num_clips,) the input frame at the middle of each clip."""
        from data_pipelines.video import protocol as protocol_lib
        from data_pipelines.video import video_ops

        # EnsureShape runs in the served graph: a loaded signature does not check ranks itself.
        frames = tf.ensure_shape(tf.convert_to_tensor(frames), [None, None, None, 3])
        num_frames = tf.shape(frames)[0]
        tf.debugging.assert_positive(num_frames, message="the video has no frames")
        tf.debugging.assert_greater_equal(tf.shape(frames)[1:3], 2,
                                          message="frames are smaller than 2×2 pixels")
        spec = self._protocol
        indices = video_ops.tf_temporal_indices(num_frames, spec, spec.test_query_start)
        sampled = tf.gather(frames, indices)  # (num_frames, H, W, 3)
        sampled.set_shape([spec.num_frames, None, None, 3])
        clips = video_ops.frames_to_clips(sampled, spec, training=False)
        middles = tf.gather(indices, protocol_lib.clip_middle_positions(spec))
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

    def _checked_difficulty(self, difficulty):
        """() float32 the one difficulty given, after the checks (which run before any use)."""
        low, high = self._bounds
        checks = [tf.debugging.assert_equal(
            tf.size(difficulty), 1,
            message="this model was trained with difficulty degrees: pass difficulty=[DD]")]
        with tf.control_dependencies(checks):
            value = tf.reshape(difficulty, [-1])[:1]
        checks = [tf.debugging.assert_all_finite(value, message="difficulty must be finite"),
                  tf.debugging.assert_positive(value, message="difficulty must be > 0"),
                  tf.debugging.assert_greater_equal(
                      value, low, message=f"difficulty is outside [{low:g}, {high:g}], half the "
                      "smallest to twice the largest difficulty of the training set"),
                  tf.debugging.assert_less_equal(
                      value, high, message=f"difficulty is outside [{low:g}, {high:g}], half the "
                      "smallest to twice the largest difficulty of the training set")]
        with tf.control_dependencies(checks):
            return tf.identity(value[0])

    def _named_group(self, group):
        """() int32 index of the group called ``group``; an unknown name fails, listing them."""
        found = tf.cast(tf.where(tf.equal(self._group_names, group))[:, 0], tf.int32)
        check = tf.debugging.assert_equal(
            tf.size(found), 1, message="unknown group: it must be one of the training groups "
            + ", ".join(self.groups))
        with tf.control_dependencies([check]):
            return tf.identity(found[0])

    def _group(self, difficulty=None, group=None):
        """The query's group index () and difficulty () (1 without DD). With a difficulty, the
        group named ``group``, or (no ``group`` input, or ``""``) the group of the nearest
        difficulty."""
        if difficulty is not None:
            value = self._checked_difficulty(difficulty)
            nearest = tf.cast(tf.argmin(tf.abs(self._difficulty - value)), tf.int32)
            if group is None:
                return nearest, value
            index = tf.cond(tf.equal(group, ""), lambda: nearest, lambda: self._named_group(group))
            return index, value
        if group is None:
            return tf.constant(0, tf.int32), tf.constant(1.0)
        return self._named_group(group), tf.constant(1.0)

    # -------------------------------------------------------------- signatures
    def _score(self, frames, difficulty=None, group=None):
        from tpt_keras.ops.exemplar_scores import aggregate_exemplar_scores

        group, query_difficulty = self._group(difficulty, group)
        parts, attention, middles = self._encode(frames)
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
def choose_exemplars(train_samples, num_exemplars: int, seed: int):
    """The exemplars baked into an export: each training group's fixed set, by the rule
    :func:`data_pipelines.tfdata.pairing.group_exemplars` that ``tpt evaluate`` uses too.

    Returns:
        indices (G, E) into ``train_samples``, mask (G, E) (the fill rule: a group with fewer
        exemplars repeats them with mask 0), difficulty (G,) of each group (its first member's;
        a group's members share one difficulty under DD), and the sorted group names (G,).
    """
    from data_pipelines.tfdata import pairing

    groups = sorted(pairing.group_members(train_samples))
    chosen = [pairing.group_exemplars(train_samples, group, num_exemplars, seed) for group in groups]
    indices = np.stack([rows for rows, _ in chosen])
    mask = np.stack([weights for _, weights in chosen])
    difficulty = np.array([train_samples[rows[0]].difficulty for rows, _ in chosen], np.float32)
    return indices, mask, difficulty, groups


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
    indices, mask, difficulty, groups = choose_exemplars(train, run.config.num_exemplars,
                                                         run.config.seed)
    used = np.unique(indices)  # each chosen exemplar encoded once
    bank = experiment.run_bank(run, [train[i] for i in used], progress=progress)
    rows = np.searchsorted(used, indices)  # (G, E) rows of the bank
    return Serving(run.model, backbone, bank.parts[rows], bank.targets[rows], mask, difficulty,
                   run.config.protocol, groups=groups,
                   difficulty_bounds=difficulty_range([s.difficulty for s in train]),
                   groups_are_difficulties=groups_are_difficulties(train))


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


def _check_writable_folder(path: str) -> None:
    """Create ``path`` (and parents) or raise one clear error naming the part that is wrong."""
    probe = path
    while probe and not os.path.exists(probe):
        probe = os.path.dirname(probe.rstrip(os.sep))
    if probe and not os.path.isdir(probe):
        raise NotADirectoryError(f"{probe} is a file, not a folder: choose another --base-dir")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as error:
        raise PermissionError(f"cannot create {path}: {error.strerror}: choose another --base-dir") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise PermissionError(f"{path} is not writable: choose another --base-dir")


def export_run(run_dir: str, name: str = "tpt", version: int = 1, base_dir: str = "saved_models",
               which: str = "best") -> str:
    """Export a run folder to ``base_dir/name/version`` (TF Serving layout); returns the path.
    The folder is checked (a file, read-only) before the model is loaded."""
    path = os.path.join(base_dir, name, str(int(version)))
    if os.path.exists(path) and (not os.path.isdir(path) or os.listdir(path)):
        raise FileExistsError(f"{path} exists: choose another --version")
    _check_writable_folder(os.path.dirname(path))
    serving = serving_from_run(run_dir, which=which, progress=True)
    export_serving(serving, path)
    low, high = serving._bounds
    with open(os.path.join(path, "tpt_export.json"), "w", encoding="utf-8") as handle:
        json.dump({"run": os.path.abspath(run_dir), "checkpoint": which,
                   "dataset": serving.model.config.dataset,
                   "use_difficulty": serving.model.config.use_difficulty,
                   "inputs": serving.inputs, "groups": serving.groups,
                   "difficulty_range": [low, high] if serving._use_difficulty else None}, handle)
    return path
