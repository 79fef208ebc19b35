"""One Adam with per-variable learning-rate multipliers (TPT: heads 1e-3, everything else 1e-4).

A single optimizer object (rather than two) keeps ``model.fit``, checkpoints, ``BackupAndRestore``,
``LossScaleOptimizer`` and ``tf.distribute`` working unchanged. The multiplier of a variable is
that of the first pattern in ``lr_multipliers`` that is a substring of the variable's path (e.g.
``"tpt_model/regressor/cls_head_hidden/kernel"``); variables matching no pattern use the base
learning rate. Learning-rate schedules work: the multiplier scales the current rate.

Only public API is used: the public ``update_step`` hook reads the variable's path from the
variable it is given. Keras passes a Keras variable (``path``) or, on the TensorFlow backend, the
underlying ``tf.Variable`` (or one replica's copy of it under ``tf.distribute``), whose public
``name`` Keras creates under the same name scopes: ``"tpt_model/regressor/cls_head_hidden/kernel:0"``
(``".../kernel/replica_1:0"`` for a second replica).

Example:
    >>> optimizer = MultiRateAdam(1e-4, lr_multipliers={"cls_head": 10.0, "reg_head": 10.0})
"""

from __future__ import annotations

import keras

from tpt_keras.layers.regressor import HEAD_PATTERNS


def variable_path(variable) -> str:
    """The path of a Keras variable, or the scoped name of a backend (``tf.Variable``) one."""
    path = getattr(variable, "path", None)
    return path if isinstance(path, str) else variable.name


@keras.saving.register_keras_serializable(package="tpt_keras")
class MultiRateAdam(keras.optimizers.Adam):
    """Adam whose learning rate is multiplied per variable, chosen by variable path.

    Args:
        learning_rate: base rate (float or schedule).
        lr_multipliers: ``{path substring: multiplier}``, first match wins (dict order).
        **kwargs: any ``keras.optimizers.Adam`` argument (e.g. ``epsilon``).
    """

    def __init__(self, learning_rate=1e-4, lr_multipliers: dict[str, float] | None = None,
                 **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        lr_multipliers = dict(lr_multipliers or {})
        for pattern, multiplier in lr_multipliers.items():
            if not isinstance(pattern, str) or not pattern:
                raise ValueError("lr_multipliers keys must be non-empty strings; received "
                                 f"{pattern!r}.")
            if not float(multiplier) >= 0:
                raise ValueError(f"lr_multipliers[{pattern!r}] must be >= 0; received {multiplier!r}.")
        self.lr_multipliers = {key: float(value) for key, value in lr_multipliers.items()}

    def multiplier_for(self, path: str) -> float:
        """The multiplier of the variable at ``path`` (1.0 when no pattern matches)."""
        for pattern, multiplier in self.lr_multipliers.items():
            if pattern in path:
                return multiplier
        return 1.0

    def update_step(self, gradient, variable, learning_rate):
        multiplier = self.multiplier_for(variable_path(variable))
        if multiplier != 1.0:
            learning_rate = learning_rate * multiplier
        super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        config = super().get_config()
        config["lr_multipliers"] = dict(self.lr_multipliers)
        return config


def build_optimizer(config) -> MultiRateAdam:
    """TPT's optimizer from a :class:`TPTConfig`: Adam with epsilon ``adam_epsilon``,
    ``learning_rate`` for the backbone, decoder and pair encoder, ``head_learning_rate`` for the
    classification and regression heads, no weight decay."""
    multiplier = config.head_learning_rate / config.learning_rate
    return MultiRateAdam(learning_rate=config.learning_rate, epsilon=config.adam_epsilon,
                         lr_multipliers={pattern: multiplier for pattern in HEAD_PATTERNS})
