"""The exported SavedModel from Python, with refusals a caller can read.

A signature called directly (``tf.saved_model.load(path).signatures["serving_default"]``) refuses
bad inputs inside the graph, and TensorFlow frames its error: ``str(error)`` starts with "Graph
execution error:" and the named message is the text of ``assertion failed: [MESSAGE]`` further
down; a missing or unexpected input fails in TensorFlow's argument binding, whose message prints
every input tensor. :func:`load` wraps the signature so that every refusal is a
:class:`ServingError` whose message is the named sentence alone:

    from tpt_keras.serving import client
    score = client.load("saved_models/mine/1")
    out = score(frames=uint8_frames, difficulty=3.2)          # inputs the model does not need: omit

Only TensorFlow and numpy are imported (no Keras, no model code).
"""

from __future__ import annotations

import json
import os

import numpy as np
import tensorflow as tf

from tpt_keras.serving.export import refusal_in


class ServingError(ValueError):
    """A refused input of the served model; the message is one sentence naming it."""


def call_signature(function, inputs: dict):
    """``function(**inputs)`` with a refusal inside the graph raised as :class:`ServingError`."""
    try:
        return function(**inputs)
    except tf.errors.InvalidArgumentError as error:
        message = refusal_in(error)
        if message is None:
            raise
        raise ServingError(message) from None


class ServedModel:
    """``serving_default`` of an export, called with plain Python / numpy values.

    Attributes:
        inputs: the signature's input names; groups: the training groups;
        difficulty_range: (low, high) accepted difficulties or None; dataset: the run's dataset.
    """

    def __init__(self, path: str):
        self.signature = tf.saved_model.load(path).signatures["serving_default"]
        self.inputs = sorted(self.signature.structured_input_signature[1])
        info_path = os.path.join(path, "tpt_export.json")
        info = {}
        if os.path.isfile(info_path):
            with open(info_path, encoding="utf-8") as handle:
                info = json.load(handle)
        self.groups = info.get("groups") or ["all"]
        bounds = info.get("difficulty_range")
        self.difficulty_range = tuple(bounds) if bounds else None
        self.dataset = info.get("dataset")
        self.protocol = info.get("protocol")

    def __call__(self, frames, difficulty=None, group=None) -> dict:
        """Score one video: ``frames`` uint8 (frames, height, width, 3); ``difficulty`` a number
        (models trained with difficulty degrees); ``group`` a training group's name (models with
        several groups). Returns the signature's outputs (tensors)."""
        return call_signature(self.signature, self.arguments(frames, difficulty, group))

    def arguments(self, frames, difficulty=None, group=None) -> dict:
        """The signature's keyword tensors, or a :class:`ServingError` naming what is wrong."""
        frames = _frames(frames)
        arguments = {"frames": frames}
        if "difficulty" in self.inputs:
            if difficulty is None:
                raise ServingError("this model was trained with difficulty degrees: pass "
                                   "difficulty=DD (the dive's degree of difficulty)")
            try:
                value = np.asarray(difficulty, np.float32).reshape(-1)
            except (TypeError, ValueError):
                raise ServingError(f"difficulty must be a number, got {difficulty!r}") from None
            arguments["difficulty"] = tf.constant(value)
        elif difficulty is not None:
            raise ServingError("this model was trained without difficulty degrees: drop difficulty")
        if "group" in self.inputs:
            if group is None and "difficulty" not in self.inputs:
                raise ServingError("this model's exemplars depend on the video's group: pass "
                                   f"group=, one of {', '.join(self.groups)}")
            if group is not None and not isinstance(group, (str, bytes)):
                raise ServingError(f"group must be a string, one of {', '.join(self.groups)}")
            arguments["group"] = tf.constant(group or "", tf.string)
        elif group is not None:
            rule = (f"has one group ({self.groups[0]!r})" if len(self.groups) == 1
                    else "picks the group by the difficulty")
            raise ServingError(f"this model {rule}: drop group")
        return arguments


def _frames(frames) -> tf.Tensor:
    """uint8 tensor of any rank (the signature checks the rank and size), or a
    :class:`ServingError` for another dtype (no silent rescaling of floats)."""
    dtype = frames.dtype if isinstance(frames, tf.Tensor) else np.asarray(frames).dtype
    if tf.as_dtype(dtype) != tf.uint8:
        raise ServingError(f"frames must be uint8 (values 0–255), got {tf.as_dtype(dtype).name}")
    return tf.convert_to_tensor(frames, tf.uint8)


def load(path: str) -> ServedModel:
    """The :class:`ServedModel` of a SavedModel folder ``saved_models/<name>/<version>``."""
    if not os.path.isfile(os.path.join(path, "saved_model.pb")):
        raise FileNotFoundError(f"{path}: no saved_model.pb (is it a `tpt export` version folder?)")
    return ServedModel(path)
