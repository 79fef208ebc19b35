"""Every setting of a TPT experiment in one frozen dataclass, with named presets.

``TPTConfig`` holds the data protocol, the model, the losses and the training schedule. A config
is saved as JSON beside the weights (``config.save(path)``, ``TPTConfig.load(path)``) and is the
only thing :class:`tpt_keras.models.tpt_model.TPTModel` needs besides the score intervals.

Quirks of the authors' code (``baiyang4/aqa_tpt``) that produced the published numbers are kept
behind named options (see ``docs/model.md``); the faithful preset ``"mtl_aqa_dd"`` reproduces them:

* ``protocol.swap_resize=True``: frames are resized to height 455 x width 256 instead of the
  intended 256 x 455 (also what the authors' AQA-7 loader does, so ``aqa7`` keeps it).
* ``protocol.test_exemplar_start=3``: test exemplars use frames 3..105 while the test query uses
  0..102.
* ``attention_scale="d"``: cross-attention logits are divided by d, not sqrt(d).
* ``self_attention="first_layer_after_ffn"``: the part self-attention sits after the FFN of the
  first decoder layer only.
* ``out_of_range_delta="first_interval"``: a relative score outside every interval gets class 0
  and no regression target (CoRe's ``argmax`` of an all-zero one-hot).
* ``initialization="torch"``, ``adam_epsilon=1e-8``: PyTorch's default initial weights (see
  ``tpt_keras.layers.initializers``) and Adam epsilon (the clean presets keep Keras': "keras", 1e-7).

The video protocol (temporal sampling, window starts, clip layout, resize, crop, flip,
normalisation) is one nested :class:`data_pipelines.video.protocol.VideoProtocol` field,
``config.protocol``, saved as a nested dict in config.json. Override its fields with dotted names:
``cfg.replace(**{"protocol.flip": False})``, or ``--set protocol.flip=false`` on the command line.

Example:

>>> cfg = get_preset("mtl_aqa_dd", epochs=10)
>>> cfg.save("/tmp/run/config.json")
>>> TPTConfig.load("/tmp/run/config.json") == cfg
True
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
from collections.abc import Iterator, Mapping
from typing import Any

ATTENTION_SCALES = ("d", "sqrt_d")
SELF_ATTENTION_MODES = ("first_layer_after_ffn", "every_layer", "none")
PART_ENCODERS = ("decoder", "holistic", "adaptive_pool", "temporal_conv")
RELATIVE_FUSIONS = ("part_wise", "pooled")
OUT_OF_RANGE_MODES = ("first_interval", "nearest_interval")
INITIALIZATIONS = ("torch", "keras")  # see tpt_keras.layers.initializers
LOSS_NORMALIZATIONS = ("per_replica", "global")  # see TPTConfig.loss_normalization

from data_pipelines import datasets as dataset_registry  # noqa: E402 (the registry: no adapter, no TensorFlow)
from data_pipelines.video.protocol import FIELDS as PROTOCOL_FIELDS, PROTOCOLS, VideoProtocol  # noqa: E402

# The registered dataset names (a live, read-only view of data_pipelines.datasets.REGISTRY: a
# dataset added with data_pipelines.datasets.register is a valid ``TPTConfig.dataset`` at once).
DATASETS = dataset_registry.REGISTRY


@dataclasses.dataclass(frozen=True)
class TPTConfig:
    """All settings of one experiment. Frozen: derive variants with :meth:`replace`.

    Data protocol:
        dataset: a registered dataset (``DATASETS``, :mod:`data_pipelines.datasets.registry`).
        use_difficulty: MTL-AQA "with DD": regress final_score / difficulty, compare only with
            exemplars of the same difficulty, multiply the prediction by the query's difficulty.
        score_max: right edge of the last positive score interval (the largest possible
            |relative score|): 30 for MTL-AQA with DD (three judges x 10), 100 for AQA-7 and
            MTL-AQA without DD, 24 for JIGSAWS (GRS sum 6..30, so |delta| <= 24).
        action_class: the dataset's class or task (AQA-7 class, JIGSAWS task: one of its
            registered ``classes``); None: its default class, or not applicable.
        fold: cross-validation fold (JIGSAWS: 0..3; checked against the dataset's ``num_folds``).
        protocol: the :class:`data_pipelines.video.protocol.VideoProtocol`: temporal sampling, window
            starts, clip layout (``num_clips`` x ``clip_len``, ``clip_stride``), resize, crop,
            flip, normalisation. ``num_clips``, ``clip_len``, ``crop_size`` and
            ``frames_per_video`` are read-only shortcuts to it.

    Model:
        feature_dim: clip feature size from the backbone. The default, 1024, is the I3D Mixed_5c
            size (``tpt_keras.models.i3d.FEATURE_DIM``, its owner; the config may not import
            the model); precomputed features bring their own size.
        num_queries: K, the number of temporal parts (learnable queries).
        num_layers, hidden_dim, ffn_dim, dropout, num_heads: decoder sizes; num_heads is for
            the self-attention over parts (the cross attention is single-head).
        temperature_init: initial learnable temperature of every cross-attention layer.
        attention_scale: "d" (quirk) or "sqrt_d": divisor of the cross-attention logits.
        self_attention: "first_layer_after_ffn" (quirk), "every_layer" (DETR placement: before
            the cross attention in each layer) or "none".
        part_encoder: "decoder" (TPT), or the ablations of Table 5a / 4: "holistic" (mean over
            clips, one part), "adaptive_pool" (K adaptive average-pooled segments),
            "temporal_conv" (strided temporal convolution into K parts).
        clip_positional_encoding, query_positional_encoding: Table 5c ablations (off in TPT).
        relative_fusion: "part_wise" (TPT: pair MLP per part, then mean) or "pooled" (Table
            5d "part-enhanced holistic": mean over parts first, then the pair MLP).
        head_hidden_dim: hidden width of the classification and regression heads.
        num_intervals: B, the number of relative-score intervals (half negative, half positive).
        out_of_range_delta: "first_interval" (quirk) or "nearest_interval".
        initialization: "torch" (the original code's initial weights: pair encoder and heads
            weights and biases U(+-1/sqrt(fan_in)), decoder biases likewise, every decoder matrix
            and the queries Xavier uniform; see ``tpt_keras.layers.initializers``) or "keras"
            (Glorot weights, zero biases).

    Losses:
        rank_margin, rank_weight, sparsity_weight: attention losses of every decoder layer.
        diversity_weight, diversity_sigma: Table 5b ablation (use with rank_weight=0).
        step_weight: optional step supervision (0: off, TPT's unsupervised parsing): weight of
            ``tpt_keras.ops.losses.step_boundary_loss`` on the last decoder layer, for training
            samples with step labels (FineDiving); see docs/parsing.md.
        cls_weight, reg_weight: interval classification NLL and per-interval regression MSE.

    Training:
        learning_rate: Adam rate of backbone, decoder and pair encoder.
        head_learning_rate: Adam rate of the classification and regression heads.
        adam_epsilon: Adam's epsilon (1e-8 as PyTorch in the faithful presets; Keras' 1e-7 in
            the clean ones).
        epochs, batch_size (pairs per step), seed.
        num_exemplars: exemplars per test video.
        empty_group: a test video whose contrastive group has no training sample: ``"error"``
            (refused, naming it) or ``"all"`` (its exemplars come from the whole training set).
        backbone: "i3d" (end to end from frames) or "none" (precomputed clip features).

    How one update is computed (the original trains on 8 GPUs x 3 pairs with data parallelism):
        accumulate_steps: K, micro-batches per update. The ``batch_size`` pairs of a step are cut
            into micro-batches of ceil(batch_size / K) pairs (each replica cutting its own share);
            each micro-batch computes its own losses, their gradients are averaged over the
            non-empty micro-batches, and the optimizer takes one step. The faithful presets: 8
            (8 x 3 = 24 pairs, the original's update on 8 GPUs), the same update on one device
            (8 micro-batches one after the other) or on 2, 4 or 8 replicas.
        loss_normalization: "per_replica" (the original: the per-interval regression means are
            taken within each micro-batch / replica) or "global" (each interval's mean counts its
            samples over the whole step, so the update does not depend on how the step is split).
        keep_last_batch: keep the last, partial batch of an epoch (the original's DataLoader):
            ceil(N / batch_size) steps per epoch instead of floor. Several replicas cannot share a
            partial batch: there it needs N to be a multiple of batch_size (train on one device
            with accumulate_steps for the same update).
    """

    # --- data protocol ---
    dataset: str = "mtl_aqa"
    use_difficulty: bool = True
    score_max: float = 30.0
    action_class: str | None = None
    fold: int = 0
    protocol: VideoProtocol = PROTOCOLS["mtl_aqa"]
    # --- model ---
    feature_dim: int = 1024
    num_queries: int = 5
    num_layers: int = 2
    hidden_dim: int = 512
    ffn_dim: int = 512
    dropout: float = 0.1
    num_heads: int = 8
    temperature_init: float = 0.07
    attention_scale: str = "d"
    self_attention: str = "first_layer_after_ffn"
    part_encoder: str = "decoder"
    clip_positional_encoding: bool = False
    query_positional_encoding: bool = False
    relative_fusion: str = "part_wise"
    head_hidden_dim: int = 128
    num_intervals: int = 16
    out_of_range_delta: str = "first_interval"
    initialization: str = "torch"
    # --- losses ---
    rank_margin: float = 3.2
    rank_weight: float = 1.0
    sparsity_weight: float = 0.05
    diversity_weight: float = 0.0
    diversity_sigma: float = 1.0
    step_weight: float = 0.0
    cls_weight: float = 1.0
    reg_weight: float = 1.0
    # --- training ---
    learning_rate: float = 1e-4
    head_learning_rate: float = 1e-3
    adam_epsilon: float = 1e-8
    epochs: int = 250
    batch_size: int = 24
    seed: int = 12
    num_exemplars: int = 10
    empty_group: str = "error"
    backbone: str = "i3d"
    # --- how one update is computed ---
    accumulate_steps: int = 8
    loss_normalization: str = "per_replica"
    keep_last_batch: bool = True

    # ------------------------------------------------------------------ validation
    def __post_init__(self):
        if not isinstance(self.dataset, str) or self.dataset not in DATASETS:
            raise ValueError(f"TPTConfig.dataset must be one of {tuple(DATASETS)}; "
                             f"received {self.dataset!r}.")
        dataset = DATASETS[self.dataset]
        choices = {
            "attention_scale": ATTENTION_SCALES,
            "self_attention": SELF_ATTENTION_MODES,
            "part_encoder": PART_ENCODERS,
            "relative_fusion": RELATIVE_FUSIONS,
            "out_of_range_delta": OUT_OF_RANGE_MODES,
            "backbone": ("i3d", "none"),
            "empty_group": ("error", "all"),
            "initialization": INITIALIZATIONS,
            "loss_normalization": LOSS_NORMALIZATIONS,
        }
        for name, allowed in choices.items():
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"TPTConfig.{name} must be one of {allowed}; received {value!r}.")
        if not isinstance(self.protocol, VideoProtocol):
            raise ValueError("TPTConfig.protocol must be a data_pipelines.video.protocol.VideoProtocol; "
                             f"received {type(self.protocol).__name__}.")
        for name in ("use_difficulty", "clip_positional_encoding", "query_positional_encoding",
                     "keep_last_batch"):
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise ValueError(f"TPTConfig.{name} must be a bool; received {value!r}.")
        positive_ints = ("feature_dim", "num_queries", "num_layers", "hidden_dim",
                         "ffn_dim", "num_heads", "head_hidden_dim", "num_intervals", "epochs",
                         "batch_size", "num_exemplars", "accumulate_steps")
        for name in positive_ints:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"TPTConfig.{name} must be a positive int; received {value!r}.")
        non_negative_ints = ("fold", "seed")
        for name in non_negative_ints:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(
                    f"TPTConfig.{name} must be a non-negative int; received {value!r}.")
        positive_floats = ("score_max", "temperature_init", "learning_rate",
                           "head_learning_rate", "diversity_sigma", "adam_epsilon")
        for name in positive_floats:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"TPTConfig.{name} must be a positive number; received {value!r}.")
        non_negative_floats = ("rank_margin", "rank_weight", "sparsity_weight",
                               "diversity_weight", "step_weight", "cls_weight", "reg_weight")
        for name in non_negative_floats:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ValueError(
                    f"TPTConfig.{name} must be a non-negative number; received {value!r}.")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"TPTConfig.dropout must be in [0, 1); received {self.dropout!r}.")
        if self.num_intervals % 2:
            raise ValueError("TPTConfig.num_intervals must be even (half negative, half positive "
                             f"intervals); received {self.num_intervals!r}.")
        if self.self_attention != "none" and self.hidden_dim % self.num_heads:
            raise ValueError(f"TPTConfig.hidden_dim ({self.hidden_dim!r}) must be divisible by "
                             f"num_heads ({self.num_heads!r}).")
        if self.part_encoder in ("adaptive_pool", "temporal_conv", "decoder") and (
                self.num_queries > self.num_clips):
            raise ValueError(f"TPTConfig.num_queries ({self.num_queries!r}) must not exceed "
                             f"num_clips ({self.num_clips!r}).")
        if dataset.classes:
            dataset.check_class(self.action_class)
        dataset.check_fold(self.fold)

    # ------------------------------------------------------------------ derived values
    @property
    def num_clips(self) -> int:
        """Clips per video (T), from the protocol."""
        return self.protocol.num_clips

    @property
    def clip_len(self) -> int:
        """Frames per clip, from the protocol."""
        return self.protocol.clip_len

    @property
    def crop_size(self) -> int:
        """Side of the square input frames, from the protocol."""
        return self.protocol.crop_size

    @property
    def frames_per_video(self) -> int:
        """Frames one video is cut from: ``(num_clips - 1) * clip_stride + clip_len`` (103 / 160)."""
        return self.protocol.num_frames

    @property
    def head_lr_multiplier(self) -> float:
        """``head_learning_rate / learning_rate`` (10 in TPT)."""
        return self.head_learning_rate / self.learning_rate

    # ------------------------------------------------------------------ (de)serialisation
    def replace(self, **overrides) -> "TPTConfig":
        """A copy with ``overrides`` applied (validated; unknown names raise ValueError).

        Protocol fields are spelled with a ``protocol.`` prefix (pass them with ``**``):
        ``cfg.replace(**{"protocol.flip": False, "epochs": 5})``; ``protocol=`` takes a whole
        :class:`VideoProtocol` (or a complete dict).
        """
        nested = {key.split(".", 1)[1]: value for key, value in overrides.items()
                  if isinstance(key, str) and key.startswith("protocol.")}
        flat = {key: value for key, value in overrides.items()
                if not (isinstance(key, str) and key.startswith("protocol."))}
        _check_keys(flat)
        protocol = flat.pop("protocol", self.protocol)
        if isinstance(protocol, dict):
            protocol = VideoProtocol.from_dict(protocol)
        if nested:
            protocol = protocol.replace(**nested)
        return dataclasses.replace(self, protocol=protocol, **flat)

    def to_dict(self) -> dict[str, Any]:
        """Every field; ``protocol`` as a nested dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TPTConfig":
        """Build from a dict; every key must be a field (unknown keys raise ValueError)."""
        if not isinstance(values, dict):
            raise ValueError(f"TPTConfig.from_dict needs a dict; received {type(values).__name__}.")
        _check_keys(values)
        values = dict(values)
        if isinstance(values.get("protocol"), dict):
            values["protocol"] = VideoProtocol.from_dict(values["protocol"])
        return cls(**values)

    def save(self, path: str | os.PathLike) -> None:
        """Write the config as JSON (creating the parent folder)."""
        path = os.fspath(path)
        parent = os.path.dirname(path)
        if parent:
            os.makedirs(parent, exist_ok=True)
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(self.to_dict(), handle, indent=2, sort_keys=False)
            handle.write("\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "TPTConfig":
        """Read a config written by :meth:`save`. Unknown keys raise ValueError naming the file."""
        path = os.fspath(path)
        try:
            with open(path, encoding="utf-8") as handle:
                values = json.load(handle)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not a valid preset JSON file ({error.msg}, line {error.lineno} "
                             f"column {error.colno}); fix the file, or pass a preset name instead "
                             f"({', '.join(PRESETS)})") from None
        except UnicodeDecodeError:
            raise ValueError(f"{path}: not a preset JSON file (not UTF-8 text); pass a config JSON "
                             f"saved by TPTConfig.save or `tpt tune`, or a preset name "
                             f"({', '.join(PRESETS)})") from None
        try:
            return cls.from_dict(values)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None


def _check_keys(values: dict[str, Any]) -> None:
    known = [field.name for field in dataclasses.fields(TPTConfig)]
    unknown = [key for key in values if key not in known]
    if unknown:
        hints = []
        names = known + [f"protocol.{name}" for name in PROTOCOL_FIELDS]
        for key in unknown:
            close = ([f"protocol.{key}"] if key in PROTOCOL_FIELDS
                     else difflib.get_close_matches(str(key), names, n=1))
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ValueError(f"Unknown TPTConfig field(s): {', '.join(hints)}.")


# Presets. The faithful MTL-AQA "with DD" setting comes first; every preset is complete and
# names its video protocol explicitly (data_pipelines.video.protocol.PROTOCOLS, where every protocol
# field is written out; docs/pipelines.md has the table).
# The clean presets: one batch per update, each interval's mean over the whole batch, full batches.
_ONE_BATCH_PER_UPDATE = {"accumulate_steps": 1, "loss_normalization": "global",
                         "keep_last_batch": False}
_BUILT_IN_PRESETS: dict[str, TPTConfig] = {
    # The authors' code and published setting (Tables 1, 4, 5): quirks on (swapped resize,
    # test exemplars from frame 3).
    "mtl_aqa_dd": TPTConfig(protocol=PROTOCOLS["mtl_aqa"]),
    # CoRe's "without DD" protocol: exemplars from the whole training set, final score directly.
    "mtl_aqa_nodd": TPTConfig(use_difficulty=False, score_max=100.0, protocol=PROTOCOLS["mtl_aqa"]),
    # AQA-7: one model per class (set action_class), scores normalised to 0-100; frames 0..102,
    # the swapped resize of the authors' AQA-7 loader.
    "aqa7": TPTConfig(dataset="aqa7", use_difficulty=False, score_max=100.0,
                      protocol=PROTOCOLS["aqa7"]),
    # JIGSAWS (MUSDL protocol): 160 frames by linspace, 20 non-overlapping clips of 8, 256x341,
    # centre crop, no flip; score = GRS sum in 6..30 so the largest |delta| is 24.
    "jigsaws": TPTConfig(dataset="jigsaws", use_difficulty=False, score_max=24.0,
                         action_class="suturing", protocol=PROTOCOLS["jigsaws"]),
    # FineDiving: group = action type (dive number), target = dive_score / difficulty (0-30, so
    # |delta| <= 30; the largest same-type |delta| in the data is 28.5); 103 frames spread over
    # the whole dive, the MTL-AQA spatial protocol without quirks. The TPT model and training
    # dynamics as the authors train them.
    "finediving": TPTConfig(dataset="finediving", use_difficulty=True, score_max=30.0,
                            out_of_range_delta="nearest_interval", protocol=PROTOCOLS["finediving"]),
    # A user's own data: the TPT model, linspace over the whole video, no data quirks.
    "custom": TPTConfig(dataset="custom", use_difficulty=False, score_max=100.0,
                        out_of_range_delta="nearest_interval", protocol=PROTOCOLS["custom"],
                        initialization="keras", adam_epsilon=1e-7, **_ONE_BATCH_PER_UPDATE),
    # Built-in synthetic clip features (data_pipelines.synthetic.features): small, CPU-fast. No
    # video: only the protocol's clip count (20) matters; it carries the custom protocol.
    "synthetic": TPTConfig(dataset="synthetic", use_difficulty=True, score_max=30.0,
                           backbone="none", feature_dim=64, hidden_dim=64, ffn_dim=64,
                           num_heads=4, head_hidden_dim=64, dropout=0.0,
                           learning_rate=1e-3, head_learning_rate=1e-3, epochs=40,
                           batch_size=32, seed=0, num_exemplars=10,
                           out_of_range_delta="nearest_interval", protocol=PROTOCOLS["custom"],
                           initialization="keras", adam_epsilon=1e-7, **_ONE_BATCH_PER_UPDATE),
    # Synthetic clip features with the step timing, scores, difficulties and action types of real
    # FineDiving dives (data_pipelines.synthetic.finediving; needs the FineDiving annotation
    # files): the parsing metric has ground truth. The synthetic model sizes on the finediving
    # clip grid (20 clips of 8, stride 5, linspace); feature_dim >= 44 (one direction per step label).
    "synthetic_finediving": TPTConfig(dataset="synthetic_finediving", use_difficulty=True,
                                      score_max=30.0, backbone="none", feature_dim=64,
                                      hidden_dim=64, ffn_dim=64, num_heads=4, head_hidden_dim=64,
                                      dropout=0.0, learning_rate=1e-3, head_learning_rate=1e-3,
                                      epochs=40, batch_size=32, seed=0, num_exemplars=10,
                                      out_of_range_delta="nearest_interval",
                                      protocol=PROTOCOLS["finediving"], initialization="keras",
                                      adam_epsilon=1e-7, **_ONE_BATCH_PER_UPDATE),
}


class _Presets(Mapping):
    """The presets by name (a read-only mapping): the built-in ones above, then those that
    registered datasets define in their ``preset_settings`` (each made on lookup from its base
    preset, ``"custom"`` unless the settings name a ``"base"``, with the dataset's name and
    protocol)."""

    def __getitem__(self, name: str) -> TPTConfig:
        if name in _BUILT_IN_PRESETS:
            return _BUILT_IN_PRESETS[name]
        owner = dataset_registry.preset_owner(name)
        if owner is None:
            raise KeyError(name)
        settings = dict(owner.preset_settings[name])
        base = self[settings.pop("base", "custom")]
        return base.replace(dataset=owner.name, protocol=PROTOCOLS[owner.protocol]).replace(**settings)

    def __iter__(self) -> Iterator[str]:
        yield from _BUILT_IN_PRESETS
        for dataset in dataset_registry.REGISTRY.values():
            yield from (name for name in dataset.preset_settings if name not in _BUILT_IN_PRESETS)

    def __len__(self) -> int:
        return sum(1 for _ in self)


PRESETS: Mapping[str, TPTConfig] = _Presets()


def get_preset(name: str, **overrides) -> TPTConfig:
    """The named preset with ``overrides`` applied.

    Example: ``get_preset("aqa7", action_class="diving")``.
    """
    if name not in PRESETS:
        raise ValueError(f"Unknown preset {name!r}; available: {tuple(PRESETS)}.")
    return PRESETS[name].replace(**overrides)
