"""One Adam with per-variable learning-rate multipliers (TPT: heads 1e-3, everything else 1e-4).

A single optimizer object (rather than two) keeps ``model.fit``, checkpoints, ``BackupAndRestore``,
``LossScaleOptimizer`` and ``tf.distribute`` working unchanged. A variable's multiplier is chosen
by an explicit tag, never by its name: the attribute ``learning_rate_group`` that the layer owning
it set on it (``tpt_keras.layers.regressor.set_learning_rate_group``; the regressor tags its heads
``"head"``). ``group_multipliers`` maps a group to its multiplier; untagged variables, and groups
not in the map, use the base learning rate. Learning-rate schedules work: the multiplier scales
the current rate.

The tags are read when the optimizer is built (``build(variables)``, which ``model.fit`` and
``apply`` call on the model's trainable variables), into ``path_multipliers``
(``{variable path: multiplier}``). The public ``update_step`` hook then finds a variable's
multiplier by its path: Keras passes a Keras variable (``path``) or, on the TensorFlow backend,
the underlying ``tf.Variable`` (or one replica's copy under ``tf.distribute``), whose public
``name`` is the same path with a ``":0"`` (``"/replica_1:0"``) suffix.

Example:
    >>> optimizer = MultiRateAdam(1e-4, group_multipliers={"head": 10.0})
"""

from __future__ import annotations

import re

import keras

from tpt_keras.layers.regressor import HEAD_GROUP

_NAME_SUFFIX = re.compile(r"(/replica_\d+)?:\d+$")


def variable_path(variable) -> str:
    """The path of a Keras variable, or of the Keras variable a backend variable (a
    ``tf.Variable`` or one replica's copy) belongs to."""
    path = getattr(variable, "path", None)
    return path if isinstance(path, str) else _NAME_SUFFIX.sub("", variable.name)


def learning_rate_group(variable) -> str | None:
    """The ``learning_rate_group`` tag of a (Keras) variable, None when untagged."""
    return getattr(variable, "learning_rate_group", None)


@keras.saving.register_keras_serializable(package="tpt_keras")
class MultiRateAdam(keras.optimizers.Adam):
    """Adam whose learning rate is multiplied per variable, chosen by the variable's group tag.

    Args:
        learning_rate: base rate (float or schedule).
        group_multipliers: ``{learning_rate_group: multiplier}``.
        **kwargs: any ``keras.optimizers.Adam`` argument (e.g. ``epsilon``).
    """

    def __init__(self, learning_rate=1e-4, group_multipliers: dict[str, float] | None = None,
                 **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        group_multipliers = dict(group_multipliers or {})
        for group, multiplier in group_multipliers.items():
            if not isinstance(group, str) or not group:
                raise ValueError("group_multipliers keys must be non-empty strings; received "
                                 f"{group!r}.")
            if not float(multiplier) >= 0:
                raise ValueError(f"group_multipliers[{group!r}] must be >= 0; received "
                                 f"{multiplier!r}.")
        self.group_multipliers = {key: float(value) for key, value in group_multipliers.items()}
        self.path_multipliers = {}

    def multiplier_for(self, variable) -> float:
        """The multiplier of ``variable`` from its group tag (1.0 when untagged or unknown)."""
        return self.group_multipliers.get(learning_rate_group(variable), 1.0)

    def build(self, variables):
        super().build(variables)
        self.path_multipliers = {variable_path(v): self.multiplier_for(v) for v in variables
                                 if self.multiplier_for(v) != 1.0}

    def update_step(self, gradient, variable, learning_rate):
        multiplier = self.path_multipliers.get(variable_path(variable), 1.0)
        if multiplier != 1.0:
            learning_rate = learning_rate * multiplier
        super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        config = super().get_config()
        config["group_multipliers"] = dict(self.group_multipliers)
        return config


def build_optimizer(config) -> MultiRateAdam:
    """TPT's optimizer from a :class:`TPTConfig`: Adam with epsilon ``adam_epsilon``,
    ``learning_rate`` for the backbone, decoder and pair encoder, ``head_learning_rate`` for the
    classification and regression heads (the ``"head"`` group), no weight decay."""
    return MultiRateAdam(learning_rate=config.learning_rate, epsilon=config.adam_epsilon,
                         group_multipliers={HEAD_GROUP: config.head_lr_multiplier})
