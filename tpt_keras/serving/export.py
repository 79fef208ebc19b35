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

# Shapes are left open (any rank) so that the signature's own checks, with their named
# messages, judge a wrong rank or size instead of TensorFlow's argument binding.
FRAMES_SPEC = tf.TensorSpec(None, tf.uint8, name="frames")
DIFFICULTY_SPEC = tf.TensorSpec(None, tf.float32, name="difficulty")
GROUP_SPEC = tf.TensorSpec(None, tf.string, name="group")

# The refusals of the signatures, one sentence each. In the served graph each is an assertion
# whose error text holds ``assertion failed: [MESSAGE]`` (see :func:`refusal_in`).
NO_FRAMES = "the video has no frames"
FRAMES_RANK = "frames must be one video: a uint8 tensor of shape (frames, height, width, 3)"
FRAMES_TOO_SMALL = "frames are smaller than 2×2 pixels"
DIFFICULTY_COUNT = "this model was trained with difficulty degrees: pass one difficulty, difficulty=[DD]"
DIFFICULTY_FINITE = "difficulty must be finite"
DIFFICULTY_POSITIVE = "difficulty must be > 0"
GROUP_COUNT = "group must be one group name (a string scalar)"


def refusal_in(error: BaseException) -> str | None:
    """The named message of a refusal inside an error that a signature call raised (TensorFlow
    frames it as ``Graph execution error: … assertion failed: [MESSAGE] …``), or None."""
    import re

    found = re.search(r"assertion failed: \[(.*?)\](?: \[|\n|$)", str(error))
    return found.group(1) if found else None


def _require(condition, message: str):
    """An assertion op: ``condition`` (scalar bool) or fail with ``message`` alone."""
    return tf.debugging.Assert(condition, [tf.constant(message)], summarize=1)


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
    difficulty, when there are several groups that are not the difficulties themselves
    (FineDiving: the dive number; ``""`` picks the group of the nearest difficulty)."""
    several = len(groups) > 1  # one group: nothing to choose, no input
    if use_difficulty:
        return ["frames", "difficulty"] + ([] if groups_are_difficulties or not several else ["group"])
    return ["frames", "group"] if several else ["frames"]


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
        groups: the group names (G,).
        use_difficulty: whether the model was trained with difficulty degrees.
        difficulty_bounds: (low, high) accepted difficulties, None without difficulty degrees.
        bank_parts, bank_targets, bank_mask: the baked exemplar bank (tensors, as above).
    """

    def __init__(self, model, backbone, bank_parts, bank_targets, bank_mask, bank_difficulty,
                 protocol, groups=("all",), difficulty_bounds=None, groups_are_difficulties=True,
                 name="tpt_serving"):
        super().__init__(name=name)
        self.model = model
        self.backbone = backbone
        self.bank_parts = tf.constant(bank_parts, tf.float32)
        self.bank_targets = tf.constant(bank_targets, tf.float32)
        self.bank_mask = tf.constant(bank_mask, tf.float32)
        self._difficulty = tf.constant(bank_difficulty, tf.float32)
        self._group_names = tf.constant(list(groups), tf.string)
        self.protocol = protocol
        self.use_difficulty = bool(model.config.use_difficulty)
        low, high = difficulty_bounds or difficulty_range(bank_difficulty)
        self._bounds = (float(low), float(high))
        self.difficulty_bounds = self._bounds if self.use_difficulty else None
        self.groups = list(groups)
        self.inputs = signature_inputs(self.use_difficulty, self.groups, groups_are_difficulties)
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
            tf.TensorSpec(None, tf.uint8, name="query_frames"),
            tf.TensorSpec(None, tf.uint8, name="exemplar_frames")])

    # -------------------------------------------------------------- pieces
    def _clips(self, frames):
        """uint8 (T, H, W, 3) → float32 (1, num_clips, clip_len, crop, crop, 3), and int32
        (num_clips,) the input frame at the middle of each clip."""
        from data_pipelines.video import protocol as protocol_lib
        from data_pipelines.video import video_ops

        frames = self._checked_frames(frames)
        num_frames = tf.shape(frames)[0]
        spec = self.protocol
        indices = video_ops.tf_temporal_indices(num_frames, spec, spec.test_query_start)
        sampled = tf.gather(frames, indices)  # (num_frames, H, W, 3)
        sampled.set_shape([spec.num_frames, None, None, 3])
        clips = video_ops.frames_to_clips(sampled, spec, training=False)
        middles = tf.gather(indices, protocol_lib.clip_middle_positions(spec))
        return clips[tf.newaxis], middles  # (1, num_clips, clip_len, crop, crop, 3), (num_clips,)

    @staticmethod
    def _checked_frames(frames):
        """Any-rank uint8 → (T, H, W, 3) after the checks, each of which runs before anything
        reads the frames (a 0-frame video never reaches a gather)."""
        frames = tf.convert_to_tensor(frames)
        shape = tf.shape(frames)
        with tf.control_dependencies([_require(tf.equal(tf.size(shape), 4), FRAMES_RANK)]):
            shape = tf.identity(shape)
        with tf.control_dependencies([_require(tf.equal(shape[3], 3), FRAMES_RANK)]):
            shape = tf.identity(shape)
        with tf.control_dependencies([_require(shape[0] > 0, NO_FRAMES)]):
            shape = tf.identity(shape)
        with tf.control_dependencies([_require(tf.reduce_all(shape[1:3] >= 2), FRAMES_TOO_SMALL)]):
            frames = tf.identity(frames)
        return tf.ensure_shape(frames, [None, None, None, 3])

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
        with tf.control_dependencies([_require(tf.equal(tf.size(difficulty), 1), DIFFICULTY_COUNT)]):
            value = tf.reshape(difficulty, [-1])[0]
        outside = (f"difficulty is outside [{low:g}, {high:g}], half the smallest to twice the "
                   "largest difficulty of the training set")
        checks = [_require(tf.reduce_all(tf.math.is_finite(value)), DIFFICULTY_FINITE)]
        with tf.control_dependencies(checks):
            checks.append(_require(value > 0, DIFFICULTY_POSITIVE))
        with tf.control_dependencies(checks):
            checks.append(_require(tf.logical_and(value >= low, value <= high), outside))
        with tf.control_dependencies(checks):
            return tf.identity(value)

    def _named_group(self, group):
        """() int32 index of the group called ``group``; an unknown name fails, listing them."""
        with tf.control_dependencies([_require(tf.equal(tf.size(group), 1), GROUP_COUNT)]):
            group = tf.reshape(group, [-1])[0]
        found = tf.cast(tf.where(tf.equal(self._group_names, group))[:, 0], tf.int32)
        check = _require(tf.equal(tf.size(found), 1), "unknown group: it must be one of the "
                         "training groups " + ", ".join(self.groups))
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
            with tf.control_dependencies([value, _require(tf.equal(tf.size(group), 1), GROUP_COUNT)]):
                name = tf.reshape(group, [-1])[0]
            index = tf.cond(tf.equal(name, ""), lambda: nearest, lambda: self._named_group(name))
            return index, value
        if group is None:
            return tf.constant(0, tf.int32), tf.constant(1.0)
        return self._named_group(group), tf.constant(1.0)

    # -------------------------------------------------------------- signatures
    def _score(self, frames, difficulty=None, group=None):
        from tpt_keras.ops.exemplar_scores import aggregate_exemplar_scores

        frames = self._checked_frames(frames)  # the frames' refusals first, then the others
        with tf.control_dependencies([frames]):
            group, query_difficulty = self._group(difficulty, group)
        parts, attention, middles = self._encode(frames)
        exemplar_parts = self.bank_parts[group]  # (E, K, d)
        count = tf.shape(exemplar_parts)[0]
        query_parts = tf.repeat(parts, count, axis=0)  # (E, K, d)
        relative = self.model.relative_scores(exemplar_parts, query_parts)[tf.newaxis]  # (1, E)
        score, per_exemplar = aggregate_exemplar_scores(
            relative, self.bank_targets[group][tf.newaxis], self.bank_mask[group][tf.newaxis],
            tf.reshape(query_difficulty, [1]), self.use_difficulty)
        mask = self.bank_mask[group] > 0
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


def check_video_path(run_dir: str, data: dict, made_by: str | None, kinetics: str) -> None:
    """Refuse a run whose features no video → features path can remake: features computed
    elsewhere (``data.json`` records ``features_source: "precomputed"``) or by another backbone
    than the Kinetics I3D (``kinetics``). The served and scored model takes video frames, and the
    I3D would give it features of another kind than those it was trained on."""
    if data.get("features_source") == "precomputed" or made_by != kinetics:
        origin = ("precomputed features (computed outside tpt-keras)"
                  if data.get("features_source") == "precomputed" else f"features made by {made_by!r}")
        raise ValueError(f"{run_dir} was trained on {origin}, not on Kinetics I3D features: the "
                         "SavedModel and `tpt score` take video frames and have no backbone that "
                         "makes those features, so this run cannot be exported or score a video; "
                         "score its features in Python with experiment.load_run(RUN).model")


def serving_from_run(run_dir: str, which: str = "best", progress: bool = False) -> Serving:
    """Build the :class:`Serving` module of a run folder: the model, the backbone, and the
    chosen exemplars encoded once (only those: not the whole training set)."""
    from tpt_keras import experiment

    run = experiment.load_run(run_dir, which=which)
    backbone = None
    if run.model.backbone is None:
        check_video_path(run_dir, run.data, experiment.feature_cache_backbone(run.features_dir),
                         experiment.BACKBONE_NAME)
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

    The folder is checked (a file, read-only) before the model is loaded. The version folder
    appears whole or not at all: everything is written to a hidden temporary folder beside it
    (``.VERSION.partial-*``, which TF Serving ignores: its versions are numbers), then renamed;
    a failed export (a full disk) removes the temporary folder, and the same export can be rerun.
    """
    import shutil
    import tempfile

    path = os.path.join(base_dir, name, str(int(version)))
    if os.path.exists(path) and (not os.path.isdir(path) or os.listdir(path)):
        raise FileExistsError(f"{path} exists: choose another --version")
    parent = os.path.dirname(path)
    _check_writable_folder(parent)
    serving = serving_from_run(run_dir, which=which, progress=True)
    partial = tempfile.mkdtemp(prefix=f".{int(version)}.partial-", dir=parent)
    try:
        export_serving(serving, partial)
        with open(os.path.join(partial, "tpt_export.json"), "w", encoding="utf-8") as handle:
            json.dump(export_info(serving, run_dir, which), handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(partial, path)  # atomic; onto an empty folder too
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return path


def export_info(serving: Serving, run_dir: str, which: str) -> dict:
    """``tpt_export.json``: what the export was made from and what its signature takes."""
    bounds = serving.difficulty_bounds
    return {"run": os.path.abspath(run_dir), "checkpoint": which,
            "dataset": serving.model.config.dataset,
            "use_difficulty": serving.use_difficulty,
            "inputs": serving.inputs, "groups": serving.groups,
            "difficulty_range": list(bounds) if bounds else None,
            "protocol": serving.protocol.to_dict()}
