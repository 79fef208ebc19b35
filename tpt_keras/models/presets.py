"""Released weights, the Keras way: a :class:`TPTModel` saved to and loaded from a *preset
directory* in the keras-hub layout, ready to publish (Kaggle Models, Hugging Face) with the
publisher's own tools::

    PRESET/
      config.json        the model's Keras serialisation (module, class, its config: the TPTConfig
                         and the relative-score intervals), without build or compile state
      model.weights.h5   every weight (Keras ``save_weights``)
      metadata.json      versions, parameter count, date, and what the caller adds: the data, the
                         protocol, the seeds and the test figures of the run it came from

``tpt_keras.load_preset(path)`` (= :func:`load_preset`) returns the model with its weights, compiled.
"""

from __future__ import annotations

import datetime
import json
import os

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.weights.h5"
METADATA_FILE = "metadata.json"


def _write_json(path: str, value) -> None:
    temporary = path + ".tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(value, handle, indent=2)
        handle.write("\n")
    os.replace(temporary, path)


def _read_json(preset_dir: str, name: str) -> dict:
    path = os.path.join(preset_dir, name)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: missing — is {preset_dir} a preset directory "
                                f"({CONFIG_FILE}, {WEIGHTS_FILE}, {METADATA_FILE})?")
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None


def _package_version() -> str | None:
    """tpt-keras's installed version (None when running from a checkout that is not installed)."""
    from importlib import metadata

    try:
        return metadata.version("tpt-keras")
    except metadata.PackageNotFoundError:
        return None


def save_preset(model, preset_dir: str, metadata: dict | None = None) -> str:
    """Write ``model`` (a built :class:`TPTModel`) to ``preset_dir`` (created; files replaced).

    Args:
        metadata: added to ``metadata.json`` beside the versions, parameter count and date.

    Returns:
        ``preset_dir``.
    """
    import keras

    os.makedirs(preset_dir, exist_ok=True)
    config = keras.saving.serialize_keras_object(model)
    for key in ("build_config", "compile_config"):
        config.pop(key, None)
    _write_json(os.path.join(preset_dir, CONFIG_FILE), config)
    model.save_weights(os.path.join(preset_dir, WEIGHTS_FILE))
    _write_json(os.path.join(preset_dir, METADATA_FILE), {
        "keras_version": keras.__version__, "tpt_keras_version": _package_version(),
        "parameter_count": int(model.count_params()),
        "date_saved": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d@%H:%M:%S"),
        **(metadata or {})})
    return preset_dir


def load_preset_config(preset_dir: str):
    """The :class:`TPTConfig` of a preset directory, without building the model."""
    from tpt_keras.config import TPTConfig

    config = _read_json(preset_dir, CONFIG_FILE)
    try:
        return TPTConfig.from_dict(config["config"]["config"])
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{os.path.join(preset_dir, CONFIG_FILE)}: not a TPTModel preset "
                         f"({type(error).__name__}: {error})") from None


def load_metadata(preset_dir: str) -> dict:
    return _read_json(preset_dir, METADATA_FILE)


def load_preset(preset_dir: str, compile: bool = True):  # noqa: A002  (Keras's argument name)
    """The :class:`TPTModel` of a preset directory with its weights (compiled unless asked not).

    Raises:
        FileNotFoundError: a file of the preset is missing; ValueError: a file is damaged (both
        name the file).
    """
    import keras

    from tpt_keras.models.loading import register

    register()
    config = _read_json(preset_dir, CONFIG_FILE)
    weights = os.path.join(preset_dir, WEIGHTS_FILE)
    if not os.path.isfile(weights):
        raise FileNotFoundError(f"{weights}: missing — is {preset_dir} a preset directory?")
    model = keras.saving.deserialize_keras_object(config)
    cfg = model.config
    if model.backbone is None:
        video = keras.ops.zeros((1, cfg.num_clips, cfg.feature_dim))
    else:
        video = keras.ops.zeros((1, cfg.num_clips, cfg.clip_len, cfg.crop_size, cfg.crop_size, 3))
    model({"query": video, "exemplar": video})  # create every weight
    try:
        model.load_weights(weights)
    except Exception as error:  # h5py / Keras raise several types for a damaged file
        raise ValueError(f"{weights}: cannot load the weights ({type(error).__name__}: {error})") from None
    if compile:
        model.compile()
    return model
