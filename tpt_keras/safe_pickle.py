"""A restricted unpickler for annotation files and checkpoints handed to us by users.

Public AQA annotation files and the I3D checkpoint are pickles. ``pickle.load`` on such a file
runs whatever callable the file names; this loader admits only plain containers, numbers,
strings and numpy arrays/dtypes, and raises :class:`UnsafePickleError` (naming the file) for
anything else — before any of it runs.
"""

from __future__ import annotations

import io
import os
import pickle

# (module, name) pairs a pickle may reference. Everything else is refused.
_ALLOWED_GLOBALS = frozenset(
    {
        ("builtins", "dict"),
        ("builtins", "list"),
        ("builtins", "tuple"),
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("builtins", "int"),
        ("builtins", "float"),
        ("builtins", "complex"),
        ("builtins", "bool"),
        ("builtins", "str"),
        ("builtins", "bytes"),
        ("builtins", "bytearray"),
        ("builtins", "slice"),
        ("collections", "OrderedDict"),
        ("collections", "defaultdict"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("_codecs", "encode"),  # numpy pickles written by Python 2 store bytes this way
    }
)


class UnsafePickleError(ValueError):
    """A pickle that references something other than plain data, or cannot be read at all."""


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, source: str):
        super().__init__(file, encoding="latin1")
        self._source = source

    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise UnsafePickleError(
            f"{self._source}: refusing to load '{module}.{name}'. Only plain containers, "
            "numbers, strings and numpy arrays are allowed in annotation/checkpoint pickles; "
            "this file may be malicious or is not an annotation file."
        )

    def persistent_load(self, pid):
        raise UnsafePickleError(f"{self._source}: persistent references are not allowed ({pid!r}).")


def loads(data: bytes, source: str = "<bytes>"):
    """Unpickle ``data`` allowing only plain data. ``source`` names it in error messages."""
    try:
        return _RestrictedUnpickler(io.BytesIO(data), source).load()
    except UnsafePickleError:
        raise
    except Exception as error:  # truncated, not a pickle, wrong protocol, ...
        raise UnsafePickleError(
            f"{source}: not a readable pickle ({type(error).__name__}: {error})"
        ) from None


def load(path: str | os.PathLike):
    """Read a pickle file with the restricted unpickler. Raises FileNotFoundError or
    :class:`UnsafePickleError`, both naming ``path``."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file")
    with open(path, "rb") as handle:
        return loads(handle.read(), source=path)
