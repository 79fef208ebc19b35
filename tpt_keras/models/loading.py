"""Loading a saved model of this package: ``tpt_keras.load_model(path)``.

``keras.saving.load_model`` finds a custom class only once its module has been imported (the
import registers it with ``@keras.saving.register_keras_serializable``). This loader imports the
two modules whose classes a ``.keras`` file of tpt-keras holds (:class:`TPTModel` and
:class:`InceptionI3D`) and then calls Keras.
"""

from __future__ import annotations

import os
import zipfile


def register() -> None:
    """Import the modules that register tpt-keras's serializable classes with Keras."""
    import tpt_keras.models.i3d  # noqa: F401
    import tpt_keras.models.tpt_model  # noqa: F401


def load_model(path: str, compile: bool = True):  # noqa: A002  (Keras's argument name)
    """Load a ``.keras`` file written by tpt-keras (``best.keras`` / ``last.keras`` of a run).

    Raises:
        FileNotFoundError: no such file; ValueError: not a readable ``.keras`` archive (both name
        the file).
    """
    import keras

    register()
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such model file")
    if path.endswith(".keras") and not zipfile.is_zipfile(path):
        raise ValueError(f"{path}: not a readable .keras archive (truncated or corrupt)")
    return keras.saving.load_model(path, compile=compile)
