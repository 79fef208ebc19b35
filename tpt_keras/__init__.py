"""tpt-keras: the Temporal Parsing Transformer for action quality assessment, in Keras 3.

Public names (imported on first use, so that ``import tpt_keras`` stays cheap and does not load
TensorFlow):

* ``tpt_keras.TPTModel`` — the model (:mod:`tpt_keras.models.tpt_model`);
* ``tpt_keras.InceptionI3D`` — the I3D backbone (:mod:`tpt_keras.models.i3d`);
* ``tpt_keras.get_preset`` — a preset :class:`TPTConfig` (:mod:`tpt_keras.config`);
* ``tpt_keras.load_model(path)`` — load a ``best.keras`` / ``last.keras`` of a run
  (:mod:`tpt_keras.models.loading`): it registers the package's classes with Keras first;
* ``tpt_keras.load_preset(path)`` — a model from a preset directory in the keras-hub layout
  (``config.json``, ``model.weights.h5``, ``metadata.json``; :mod:`tpt_keras.models.presets`).

``keras.saving.load_model`` works too once the classes are registered: ``import tpt_keras``
registers them when Keras is already imported, and ``tpt_keras.load_model`` or any use of the
names above always does.
"""

import importlib
import os
import sys

# TensorFlow turns its oneDNN CPU kernels on by default only on CPUs with AVX-512 VNNI/BF16 or
# AMX; on AVX2-only CPUs its matmul and convolutions run at about half speed without them
# (benchmarks/i3d_throughput.py). Ask for them unless the user chose. This takes effect only if
# TensorFlow is not imported yet: import tpt_keras first, or set the variable yourself.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

__version__ = "0.1.0"

_LAZY = {"TPTModel": "tpt_keras.models.tpt_model", "InceptionI3D": "tpt_keras.models.i3d",
         "get_preset": "tpt_keras.config", "load_model": "tpt_keras.models.loading",
         "load_preset": "tpt_keras.models.presets"}
__all__ = ["TPTModel", "InceptionI3D", "get_preset", "load_model", "load_preset", "__version__"]


def __getattr__(name):  # PEP 562: import the module of a public name on first access
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        if name in ("TPTModel", "InceptionI3D"):
            importlib.import_module("tpt_keras.models.loading").register()
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tpt_keras' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


if "keras" in sys.modules:  # Keras already loaded: registering costs nothing, so do it now
    importlib.import_module("tpt_keras.models.loading").register()
