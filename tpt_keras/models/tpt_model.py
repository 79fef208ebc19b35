"""TPTModel: temporal parsing transformer + part-aware contrastive regressor, trained on pairs.

Batch contract (dict elements of a ``tf.data`` dataset; there is no separate ``y``):

Pairs (``fit`` / ``evaluate`` -> ``train_step`` / ``test_step``):
    "query", "exemplar": (B, T, D) float32 clip features, or (B, T, clip_len, H, W, 3) frames
        when the model has a backbone.
    "query_score", "exemplar_score": (B,) regression targets (score / difficulty with DD).
    "query_difficulty": (B,) (unused by the pair losses; kept for the contract).
    Optional, for step supervision (``config.step_weight`` > 0): "query_boundaries",
    "exemplar_boundaries" (B, M) annotated step boundaries in clip units padded to M, and
    "query_boundary_mask", "exemplar_boundary_mask" (B, M) 1 for a real boundary.

Evaluation (``predict`` -> ``predict_step``):
    "query": (B, T, D); "exemplars": (B, E, T, D) (or frames as above).
    "exemplar_scores": (B, E) targets; "exemplar_mask": (B, E) 1 for a real exemplar, 0 for
    padding; "query_difficulty": (B,); optionally "score": (B,) the true final score.
    Output dict: "score" (B,) = masked mean over exemplars of (relative + exemplar_target)
    [x query_difficulty when ``use_difficulty``]; "exemplar_scores" (B, E) the per-exemplar
    predictions; "attention" (B, L, T, K) of the query.

Training uses both directions of each pair: f_r(query, exemplar) predicts s_e - s_q and
f_r(exemplar, query) predicts s_q - s_e. The loss is cls + reg (each summed over the two
directions) + the decoder's weighted attention losses of every layer
(``TemporalParsingDecoder.attention_losses`` of the returned attention maps: the query and
exemplar go through the part encoder in one call, so those losses are batch means over both
videos, as in the original code). :meth:`TPTModel.compute_pair_losses` gathers them all.

One update (``train_step``) is the mean of the gradients of several **units**: the step's
``batch_size`` pairs are cut into ``config.accumulate_steps`` micro-batches of
ceil(batch_size / accumulate_steps) pairs (:func:`micro_batch_size`), each replica cutting its own
share into consecutive micro-batches of that size; each non-empty micro-batch is a unit that
computes its own losses; the gradients of all U units (U summed over replicas) are averaged and the
optimizer takes one step. With 24 pairs and 8 micro-batches of 3 this is the original's update on
8 GPUs x 3 pairs, whether one device runs the 8 micro-batches one after the other, 8 replicas one
each under ``MirroredStrategy``, or 4 replicas two each. ``config.loss_normalization`` says whose
samples the per-interval regression means count: the unit's own (``"per_replica"``, the original) or every unit's of the
update (``"global"``: the interval counts are summed over micro-batches and replicas, and the
update is that of the whole batch at once). The collective sums live in this module
(:func:`sum_over_replicas`); the loss functions of ``tpt_keras.ops.losses`` are pure.

For fast inference with an exemplar bank use :meth:`TPTModel.encode` once per exemplar,
:meth:`TPTModel.relative_scores` per query and :func:`aggregate_exemplar_scores`;
``predict_step`` uses the same three.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from tpt_keras.config import TPTConfig
from tpt_keras.layers.part_encoders import build_part_encoder
from tpt_keras.layers.regressor import PartAwareRegressor
from tpt_keras.models.optimizer import build_optimizer
from tpt_keras.ops import groups
from tpt_keras.ops import losses as tpt_losses
from tpt_keras.ops.exemplar_scores import aggregate_exemplar_scores

def scale_loss_for_replicas(loss):
    """``loss / num_replicas_in_sync`` of the current strategy: what a custom ``train_step`` with
    one unit per replica takes gradients of (before ``optimizer.scale_loss``). The optimizer sums
    gradients over replicas, so the sum of the per-replica means divided by the replica count is
    the global-batch mean. Log the unscaled loss. A no-op with one replica."""
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    if replicas == 1:
        return loss
    return loss * tf.cast(1.0 / replicas, loss.dtype)


def sum_over_replicas(value):
    """``value`` summed over the replicas in sync: a collective, every replica must call it.
    ``value`` itself outside a replica context or with one replica."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_reduce(tf.distribute.ReduceOp.SUM, value)


def micro_batch_size(batch_size: int, accumulate_steps: int) -> int:
    """Pairs per micro-batch: ceil(batch_size / accumulate_steps), at least 1.

    ``batch_size`` is the global batch of a step (``config.batch_size``), over all replicas."""
    return max(1, -(-int(batch_size) // int(accumulate_steps)))


def _unpack(data):
    """The input dict from a dataset element (a dict, or a 1-tuple from ``predict_on_batch``)."""
    x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
    return x


@keras.saving.register_keras_serializable(package="tpt_keras")
class TPTModel(keras.Model):
    """Action quality assessment by contrastive regression on temporal parts.

    Args:
        config: a :class:`TPTConfig` (or its dict).
        intervals: (num_intervals, 2) relative-score intervals from
            :func:`tpt_keras.ops.groups.compute_intervals` on the training set.
        backbone: optional ``keras.Model`` mapping clips (N, clip_len, H, W, 3) -> (N, D); with
            it, videos are (B, T, clip_len, H, W, 3) and query + exemplar(s) share one backbone
            pass.

    Example:
        >>> cfg = get_preset("synthetic")
        >>> model = TPTModel(cfg, compute_intervals(targets, groups, max_value=cfg.score_max))
        >>> model.compile()
        >>> model.fit(reader.feature_pair_dataset(...), epochs=cfg.epochs, steps_per_epoch=steps,
        ...           callbacks=[ValidationSpearman(eval_dataset)])
    """

    def __init__(self, config, intervals, backbone: keras.Model | None = None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(config, dict):
            config = TPTConfig.from_dict(config)
        if not isinstance(config, TPTConfig):
            raise ValueError(f"config must be a TPTConfig or dict; received {type(config).__name__}.")
        intervals = np.asarray(intervals, dtype=np.float64)
        if intervals.shape != (config.num_intervals, 2):
            raise ValueError(f"intervals must have shape ({config.num_intervals}, 2); received "
                             f"{intervals.shape}.")
        if np.any(intervals[:, 0] > intervals[:, 1]):
            raise ValueError(f"every interval needs left <= right; received {intervals.tolist()}.")
        if backbone is not None:
            output_shape = getattr(backbone, "output_shape", None)
            if isinstance(output_shape, tuple) and output_shape[-1] not in (None, config.feature_dim):
                raise ValueError(f"the backbone outputs {output_shape[-1]} features per clip but "
                                 f"config.feature_dim is {config.feature_dim}.")
        self.config = config
        self.intervals = intervals
        self.backbone = backbone
        self.part_encoder = build_part_encoder(config, dtype=self.dtype_policy, name="part_encoder")
        self.regressor = PartAwareRegressor(
            config.hidden_dim, num_intervals=config.num_intervals,
            head_hidden_dim=config.head_hidden_dim, dropout=config.dropout,
            fusion=config.relative_fusion, initialization=config.initialization,
            dtype=self.dtype_policy, name="regressor")
        names = ["loss", "cls_loss", "reg_loss"]
        if config.part_encoder == "decoder":
            names += ["rank_loss", "sparsity_loss"]
            if config.diversity_weight:
                names.append("diversity_loss")
            if config.step_weight:
                names.append("step_loss")
        self._trackers = [keras.metrics.Mean(name=name) for name in names]
        self.build()

    # ------------------------------------------------------------------ building
    def build(self, input_shape=None):
        cfg = self.config
        self.part_encoder.build((None, cfg.num_clips, cfg.feature_dim))
        num_parts = 1 if cfg.part_encoder == "holistic" else cfg.num_queries
        self.regressor.build((None, num_parts, cfg.hidden_dim), (None, num_parts, cfg.hidden_dim))

    @property
    def metrics(self):
        return list(self._trackers)

    def compile(self, optimizer=None, loss=None, loss_weights=None, metrics=None,
                weighted_metrics=None, **kwargs):
        """``keras.Model.compile``; the default optimizer is the config's two-rate Adam.

        TPT computes its own losses and logs its own metrics (:meth:`compute_pair_losses`), so
        ``loss``, ``loss_weights``, ``metrics`` and ``weighted_metrics`` are refused rather than
        silently ignored: weigh the terms with the config's ``cls_weight``, ``reg_weight``,
        ``rank_weight``, ``sparsity_weight``, ``diversity_weight`` and ``step_weight``, and measure ranking
        quality with a callback (``tpt_keras.experiment.callbacks.ValidationSpearman``).
        """
        given = [name for name, value in (("loss", loss), ("loss_weights", loss_weights),
                                          ("metrics", metrics),
                                          ("weighted_metrics", weighted_metrics))
                 if value is not None]
        if given:
            raise ValueError(
                f"TPTModel.compile does not take {', '.join(given)}: TPT computes its own losses "
                "and metrics; set cls_weight / reg_weight / rank_weight / sparsity_weight / "
                "diversity_weight in TPTConfig, and use a callback such as "
                "tpt_keras.experiment.callbacks.ValidationSpearman for other measures.")
        if optimizer is None:
            optimizer = build_optimizer(self.config)
        super().compile(optimizer=optimizer, **kwargs)

    def compile_from_config(self, config):
        """Restore the compile state on ``keras.saving.load_model`` (``compile`` is overridden, so
        Keras would otherwise skip it)."""
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if self.built:
            self.optimizer.build(self.trainable_variables)  # so the saved optimizer state loads

    # ------------------------------------------------------------------ forward
    def clip_features(self, videos, training=None):
        """(N, T, D) clip features: the input itself, or the backbone applied to every clip.

        Args:
            videos: (N, T, D) features, or (N, T, clip_len, H, W, 3) frames with a backbone.
        """
        if self.backbone is None:
            return videos
        shape = ops.shape(videos)
        clips = ops.reshape(videos, (-1,) + tuple(shape[2:]))  # (N*T, clip_len, H, W, 3)
        features = self.backbone(clips, training=training)  # (N*T, D)
        return ops.reshape(features, (shape[0], shape[1], -1))  # (N, T, D)

    def encode(self, video, training=False):
        """Parts and attention of a batch of videos.

        Args:
            video: (B, T, D) features or (B, T, clip_len, H, W, 3) frames.

        Returns:
            parts (B, K, d); attention (B, L, T, K) float32.
        """
        return self.part_encoder(self.clip_features(video, training=training), training=training)

    def relative_scores(self, exemplar_parts, query_parts):
        """Relative score of each query with respect to its exemplar, f_r(exemplar, query).

        Args:
            exemplar_parts: (B, K, d); query_parts: (B, K, d).

        Returns:
            (B,) float32: predicted s_query - s_exemplar (in target units).
        """
        log_probs, regression = self.regressor(exemplar_parts, query_parts, training=False)
        return groups.decode_relative_scores(log_probs, regression, self.intervals)

    def call(self, inputs, training=None):
        """Pair forward pass (both directions).

        Args:
            inputs: dict with "query" and "exemplar" (B, T, D) (or frames).

        Returns:
            dict: "log_probs", "regression" (2B, N) float32, rows [:B] = f_r(query, exemplar)
            (predicting s_e - s_q), rows [B:] = f_r(exemplar, query) (predicting s_q - s_e);
            "attention" (2B, L, T, K), query videos first.
        """
        query, exemplar = inputs["query"], inputs["exemplar"]
        batch = ops.shape(query)[0]
        parts, attention = self.encode(ops.concatenate([query, exemplar], axis=0),
                                       training=training)  # (2B, K, d), (2B, L, T, K)
        query_parts, exemplar_parts = parts[:batch], parts[batch:]
        first = ops.concatenate([query_parts, exemplar_parts], axis=0)
        second = ops.concatenate([exemplar_parts, query_parts], axis=0)
        log_probs, regression = self.regressor(first, second, training=training)
        return {"log_probs": log_probs, "regression": regression, "attention": attention}

    # ------------------------------------------------------------------ losses
    def pair_targets(self, inputs):
        """Interval membership and regression targets of both directions.

        Returns:
            membership, target: (2B, N) float32; rows [:B] for s_e - s_q, [B:] for s_q - s_e.
        """
        query_score = ops.cast(ops.reshape(inputs["query_score"], (-1,)), "float32")
        exemplar_score = ops.cast(ops.reshape(inputs["exemplar_score"], (-1,)), "float32")
        delta = ops.concatenate([exemplar_score - query_score, query_score - exemplar_score], axis=0)
        return groups.interval_targets(delta, self.intervals, self.config.out_of_range_delta)

    @staticmethod
    def interval_counts(membership):
        """(2, N) samples in each interval, per direction, of a (2B, N) membership."""
        batch = ops.shape(membership)[0] // 2
        return ops.stack([ops.sum(membership[:batch], axis=0),
                          ops.sum(membership[batch:], axis=0)])

    def compute_pair_losses(self, inputs, outputs, interval_counts=None, num_units=1):
        """Every loss term of a pair batch, from ``inputs`` and ``outputs`` only.

        Args:
            inputs: the pair batch dict.
            outputs: :meth:`call`'s output for it.
            interval_counts: optional (2, N) divisor of each direction's per-interval regression
                means (``"global"`` normalisation: the counts over all units of an update);
                default: this batch's own counts.
            num_units: U, the units whose mean gradient makes the update; the regression term is
                multiplied by it when ``interval_counts`` is given, so that the mean of the units'
                terms is the regression loss of all their samples together.

        Returns:
            dict of float32 scalars: "loss" (the total), "cls_loss", "reg_loss" and, for the
            decoder, the unweighted "rank_loss" / "sparsity_loss" (/ "diversity_loss") summed
            over layers (:meth:`TemporalParsingDecoder.attention_losses`). The total is
            cls_weight * cls_loss + reg_weight * reg_loss + the decoder's weighted attention
            losses; with ``step_weight`` also "step_loss"
            (:func:`tpt_keras.ops.losses.step_boundary_loss` of the last layer, 0 for a batch
            without step boundaries), + step_weight * step_loss.
        """
        cfg = self.config
        membership, target = self.pair_targets(inputs)
        batch = ops.shape(membership)[0] // 2
        log_probs, regression = outputs["log_probs"], outputs["regression"]
        cls_loss = 0.0
        reg_loss = 0.0
        for direction, rows in enumerate((slice(None, batch), slice(batch, None))):
            counts = None if interval_counts is None else interval_counts[direction]
            cls_loss += tpt_losses.interval_classification_loss(log_probs[rows], membership[rows])
            reg_loss += tpt_losses.interval_regression_loss(regression[rows], membership[rows],
                                                            target[rows], counts)
        if interval_counts is not None:
            reg_loss = reg_loss * ops.cast(num_units, "float32")
        total = cfg.cls_weight * cls_loss + cfg.reg_weight * reg_loss
        terms = {"cls_loss": cls_loss, "reg_loss": reg_loss}
        if cfg.part_encoder == "decoder":
            attention = outputs["attention"]  # (2B, L, T, K)
            attention_total, attention_terms = self.part_encoder.attention_losses(attention)
            terms.update(attention_terms)
            total = total + attention_total
            if cfg.step_weight:
                terms["step_loss"] = self._step_loss(inputs, attention[:, -1])
                total = total + cfg.step_weight * terms["step_loss"]
        terms["loss"] = total
        return terms

    @staticmethod
    def _step_loss(inputs, attention):
        """Step supervision on the last layer's (2B, T, K) maps, queries then exemplars; 0 when
        the batch carries no step boundaries (``query_boundaries`` etc., see the module doc)."""
        if "query_boundaries" not in inputs:
            return ops.zeros((), "float32")
        boundaries = ops.concatenate([inputs["query_boundaries"], inputs["exemplar_boundaries"]], axis=0)
        mask = ops.concatenate([inputs["query_boundary_mask"], inputs["exemplar_boundary_mask"]], axis=0)
        return tpt_losses.step_boundary_loss(attention, boundaries, mask)

    def _record(self, terms):
        for tracker in self._trackers:
            tracker.update_state(terms[tracker.name])
        return {tracker.name: tracker.result() for tracker in self._trackers}

    # ------------------------------------------------------------------ steps
    def train_step(self, data):
        """One update: the mean of the gradients of this step's units (see the module doc).

        Logs the mean over this replica's units of every term (Keras averages them over
        replicas)."""
        inputs = _unpack(data)
        cfg = self.config
        variables = self.trainable_variables
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        batch = tf.shape(inputs["query_score"])[0]
        micro = micro_batch_size(cfg.batch_size, cfg.accumulate_steps)
        one_unit = -(-cfg.batch_size // replicas) <= micro  # this replica's share is one unit
        if one_unit:
            size = batch
            local_units = tf.constant(1, tf.int32)
        else:
            size = tf.constant(micro, tf.int32)
            local_units = (batch + size - 1) // size
        units = sum_over_replicas(tf.cast(local_units, "float32"))
        counts = self._update_interval_counts(inputs)

        def unit_gradients(index):
            unit = tf.nest.map_structure(lambda x: x[index * size:(index + 1) * size], inputs)
            with tf.GradientTape() as tape:
                outputs = self(unit, training=True)
                terms = self.compute_pair_losses(unit, outputs, counts, units)
                # The optimizer sums replica gradients: the mean over all units of the update.
                scaled = self.optimizer.scale_loss(terms["loss"] / units)
            gradients = tape.gradient(scaled, variables)
            gradients = [tf.zeros_like(v) if g is None else tf.convert_to_tensor(g)
                         for g, v in zip(gradients, variables)]
            return gradients, terms

        if one_unit:
            gradients, terms = unit_gradients(0)
        else:
            gradients, terms = self._accumulate(unit_gradients, local_units)
        self.optimizer.apply(gradients, variables)
        return self._record(terms)

    def _update_interval_counts(self, inputs):
        """The (2, N) interval counts of the whole update (this batch summed over the replicas)
        under ``"global"`` normalisation; None under ``"per_replica"`` (each unit its own)."""
        if self.config.loss_normalization != "global":
            return None
        return sum_over_replicas(self.interval_counts(self.pair_targets(inputs)[0]))

    @staticmethod
    def _accumulate(unit_gradients, count):
        """Sum of ``unit_gradients(i)``'s gradients and mean of its terms over i < ``count``, one
        unit after the other (a ``tf.while_loop``: one unit's activations in memory at a time)."""
        first_gradients, first_terms = unit_gradients(0)
        initial = (tf.constant(1, tf.int32), first_gradients, first_terms)

        def body(index, gradients, terms):
            new_gradients, new_terms = unit_gradients(index)
            return (index + 1, [a + b for a, b in zip(gradients, new_gradients)],
                    {name: terms[name] + new_terms[name] for name in terms})

        _, gradients, terms = tf.while_loop(lambda index, *_: index < count, body, initial)
        mean = 1.0 / tf.cast(count, "float32")
        return gradients, {name: value * mean for name, value in terms.items()}

    def test_step(self, data):
        """Pair losses on a batch of training-layout pairs (``query`` / ``exemplar``).

        A test-protocol batch (``exemplars`` (B, E, ...), from ``experiment.eval_dataset``) has
        no pair loss, and its metric, Spearman's ρ, needs the whole split at once: it is refused
        with a pointer to what computes it.
        """
        inputs = _unpack(data)
        if "exemplar" not in inputs and "exemplars" in inputs:
            raise ValueError(
                "model.evaluate / fit(validation_data=...) take training-layout pair batches "
                "(query, exemplar, query_score, exemplar_score); this dataset has the test "
                "protocol's layout (exemplars per query). Spearman's ρ needs the whole split: use "
                "tpt_keras.experiment.callbacks.evaluate(model, dataset), the "
                "tpt_keras.experiment.callbacks.ValidationSpearman callback during fit, or `tpt evaluate`.")
        outputs = self(inputs, training=False)
        units = sum_over_replicas(tf.constant(1.0))  # the batch of each replica is one unit
        return self._record(self.compute_pair_losses(inputs, outputs,
                                                     self._update_interval_counts(inputs), units))

    def predict_step(self, data):
        inputs = _unpack(data)
        query, exemplars = inputs["query"], inputs["exemplars"]
        batch = ops.shape(query)[0]
        num_exemplars = ops.shape(exemplars)[1]
        flat = ops.reshape(exemplars, (-1,) + tuple(ops.shape(exemplars)[2:]))  # (B*E, T, ...)
        parts, attention = self.encode(ops.concatenate([query, flat], axis=0), training=False)
        query_parts = ops.repeat(parts[:batch], num_exemplars, axis=0)  # (B*E, K, d), b-major
        relative = self.relative_scores(parts[batch:], query_parts)  # (B*E,)
        relative = ops.reshape(relative, (batch, num_exemplars))  # (B, E)
        score, per_exemplar = aggregate_exemplar_scores(
            relative, inputs["exemplar_scores"], inputs["exemplar_mask"],
            inputs["query_difficulty"], self.config.use_difficulty)
        return {"score": score, "exemplar_scores": per_exemplar, "attention": attention[:batch]}

    # ------------------------------------------------------------------ serialisation
    def get_config(self):
        config = super().get_config()
        config.update({
            "config": self.config.to_dict(),
            "intervals": self.intervals.tolist(),
            "backbone": (None if self.backbone is None
                         else keras.saving.serialize_keras_object(self.backbone)),
        })
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        backbone = config.pop("backbone", None)
        if backbone is not None:
            backbone = keras.saving.deserialize_keras_object(backbone,
                                                             custom_objects=custom_objects)
        return cls(backbone=backbone, **config)
