"""Part-aware contrastive regressor.

f_r(P_a, P_b): for every part k, a shared MLP on [p_a,k ; p_b,k] (Dense(d) -> ReLU -> Dropout ->
Dense(d)), mean over the K parts, then two heads on the pair representation:

* classification: Dense(128) -> ReLU -> Dense(B) -> log-softmax  (which interval)
* regression:     Dense(128) -> ReLU -> Dense(B) -> sigmoid      (where inside each interval)

f_r(P_a, P_b) predicts s_b - s_a: training uses f_r(query, exemplar) -> s_exemplar - s_query and
f_r(exemplar, query) -> s_query - s_exemplar; test uses f_r(exemplar, query), the relative score of
the query. The heads run in float32 (also under mixed precision). Their layers and variables carry
the tag ``learning_rate_group = "head"`` (``HEAD_GROUP``), by which the two-rate optimizer gives
them the head learning rate, whatever their names.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from tpt_keras.config import RELATIVE_FUSIONS as FUSIONS
from tpt_keras.layers import initializers

# The learning-rate group of the classification and regression heads.
HEAD_GROUP = "head"


def set_learning_rate_group(layer, group: str) -> None:
    """Tag a built layer and every variable it owns with ``learning_rate_group = group``
    (read by ``tpt_keras.models.optimizer.MultiRateAdam``)."""
    layer.learning_rate_group = group
    for variable in layer.variables:
        variable.learning_rate_group = group


@keras.saving.register_keras_serializable(package="tpt_keras")
class PartAwareRegressor(layers.Layer):
    """Relative-score regressor on two sets of part features.

    Args:
        hidden_dim: d, the part size and the pair MLP width.
        num_intervals: B, outputs of each head.
        head_hidden_dim: hidden width of the heads (128).
        dropout: dropout inside the pair MLP.
        fusion: "part_wise" (TPT: pair MLP per part, then mean over parts) or "pooled" (Table 5d
            "part-enhanced holistic": mean over each video's parts first, then the pair MLP).
        initialization: "torch" (PyTorch's ``nn.Linear`` default: weights and biases
            U(+-1/sqrt(fan_in)), as the original code) or "keras" (Glorot, zero biases).

    Call arguments:
        parts_a: (B, K, d) parts of the first video.
        parts_b: (B, K, d) parts of the second video.

    Returns:
        log_probs (B, N) float32 log-softmax over intervals; regression (B, N) float32 sigmoid.

    Example:
        >>> regressor = PartAwareRegressor(64)
        >>> log_probs, regression = regressor(exemplar_parts, query_parts)
    """

    def __init__(self, hidden_dim: int, num_intervals: int = 16, head_hidden_dim: int = 128,
                 dropout: float = 0.1, fusion: str = "part_wise", initialization: str = "torch",
                 **kwargs):
        super().__init__(**kwargs)
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}; received {fusion!r}.")
        self.hidden_dim = hidden_dim
        self.num_intervals = num_intervals
        self.head_hidden_dim = head_hidden_dim
        self.dropout = dropout
        self.fusion = fusion
        self.initialization = initializers.check_initialization(initialization)

        def dense(units, name, dtype):
            return layers.Dense(units, kernel_initializer=initializers.linear_kernel(initialization),
                                dtype=dtype, name=name)

        self.pair_inner = dense(hidden_dim, "pair_inner", self.dtype_policy)
        self.pair_dropout = layers.Dropout(dropout, dtype=self.dtype_policy)
        self.pair_outer = dense(hidden_dim, "pair_outer", self.dtype_policy)
        # Heads in float32 regardless of the policy: interval logits and sigmoid are sensitive.
        self.cls_head_hidden = dense(head_hidden_dim, "cls_head_hidden", "float32")
        self.cls_head_output = dense(num_intervals, "cls_head_output", "float32")
        self.reg_head_hidden = dense(head_hidden_dim, "reg_head_hidden", "float32")
        self.reg_head_output = dense(num_intervals, "reg_head_output", "float32")

    def build(self, parts_a_shape, parts_b_shape=None):
        batch = parts_a_shape[0]
        build = initializers.build_linear
        build(self.pair_inner, (batch, None, 2 * self.hidden_dim), self.initialization)
        build(self.pair_outer, (batch, None, self.hidden_dim), self.initialization)
        for hidden, output in ((self.cls_head_hidden, self.cls_head_output),
                               (self.reg_head_hidden, self.reg_head_output)):
            build(hidden, (batch, self.hidden_dim), self.initialization)
            build(output, (batch, self.head_hidden_dim), self.initialization)
        for head in self.head_layers:
            set_learning_rate_group(head, HEAD_GROUP)

    @property
    def head_layers(self):
        """The four Dense layers of the classification and regression heads."""
        return [self.cls_head_hidden, self.cls_head_output, self.reg_head_hidden,
                self.reg_head_output]

    def pair_features(self, parts_a, parts_b, training=None):
        """The fused relative representation (B, d) of the pair (before the heads)."""
        if self.fusion == "pooled":
            parts_a = ops.mean(parts_a, axis=1, keepdims=True)  # (B, 1, d)
            parts_b = ops.mean(parts_b, axis=1, keepdims=True)
        pairs = ops.concatenate([parts_a, parts_b], axis=-1)  # (B, K, 2d)
        hidden = self.pair_dropout(ops.relu(self.pair_inner(pairs)), training=training)
        relative = self.pair_outer(hidden)  # (B, K, d)
        return ops.mean(relative, axis=1)  # (B, d)

    def call(self, parts_a, parts_b, training=None):
        features = ops.cast(self.pair_features(parts_a, parts_b, training=training), "float32")
        logits = self.cls_head_output(ops.relu(self.cls_head_hidden(features)))
        log_probs = ops.log_softmax(logits, axis=-1)  # (B, N)
        regression = ops.sigmoid(self.reg_head_output(ops.relu(self.reg_head_hidden(features))))
        return log_probs, regression

    def compute_output_shape(self, parts_a_shape, parts_b_shape=None):
        shape = (parts_a_shape[0], self.num_intervals)
        return shape, shape

    def get_config(self):
        config = super().get_config()
        config.update({"hidden_dim": self.hidden_dim, "num_intervals": self.num_intervals,
                       "head_hidden_dim": self.head_hidden_dim, "dropout": self.dropout,
                       "fusion": self.fusion, "initialization": self.initialization})
        return config
