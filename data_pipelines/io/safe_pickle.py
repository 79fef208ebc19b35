"""A restricted unpickler for annotation files and checkpoints handed to us by users.

Public AQA annotation files and the I3D checkpoint are pickles. ``pickle.load`` on such a file
runs whatever callable the file names; this loader admits only plain containers, numbers,
strings and numpy arrays/dtypes, and raises :class:`UnsafePickleError` (naming the file) for
anything else — before any of it runs.

It also refuses allocations sized by a number in the file rather than by the bytes the file
holds (a 36-byte pickle ``bytearray(3000000000)`` would otherwise take 3 GB):

* ``bytes``/``bytearray`` called with an integer (``bytearray(n)``: n zero bytes) are refused;
* a numpy array made with a shape — reconstructed (``_reconstruct``), rebuilt from its state
  (``ndarray.__setstate__``) or constructed directly (``numpy.ndarray(shape, dtype)`` by REDUCE,
  NEWOBJ, NEWOBJ_EX, OBJ or INST) — must not be larger than the file itself, and an array's state
  must carry exactly as much data as its shape says (numpy does not check this for object arrays).

So the memory a load takes is bounded by a small multiple of the file's size.
"""

from __future__ import annotations

import _compat_pickle
import io
import math
import os
import pickle

import numpy as np

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
    """A pickle that references something other than plain data, asks for an allocation larger
    than the file, or cannot be read at all. The message names the file."""


def _shape_size(shape, source: str) -> int:
    """Number of elements of ``shape`` (a tuple of non-negative ints), checked."""
    if isinstance(shape, int):
        shape = (shape,)
    if not isinstance(shape, tuple) or not all(isinstance(n, int) and n >= 0 for n in shape):
        raise UnsafePickleError(f"{source}: invalid numpy array shape {shape!r}")
    return math.prod(shape)


class _RestrictedUnpickler(pickle._Unpickler):  # the Python implementation: its BUILD can be checked
    """Allow-listed globals; allocation-sized calls checked against ``limit`` bytes."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, file, source: str, limit: int):
        super().__init__(file, encoding="latin1")
        self._source = source
        self._limit = limit

    def _refuse_size(self, what: str, size: int):
        raise UnsafePickleError(
            f"{self._source}: refusing {what} of {size} bytes, more than the file's {self._limit} "
            "bytes could hold; this file may be malicious or is not an annotation file.")

    def find_class(self, module: str, name: str):
        if self.proto < 3:  # protocol 0–2 name Python 2's modules (``__builtin__``)
            module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
            module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if (module, name) not in _ALLOWED_GLOBALS:
            raise UnsafePickleError(
                f"{self._source}: refusing to load '{module}.{name}'. Only plain containers, "
                "numbers, strings and numpy arrays are allowed in annotation/checkpoint pickles; "
                "this file may be malicious or is not an annotation file."
            )
        found = super().find_class(module, name)
        if name in ("bytes", "bytearray"):
            return self._checked_bytes(found)
        if name == "_reconstruct":
            return self._checked_reconstruct(found)
        return found

    def _checked_bytes(self, kind):
        def build(*args):
            if args and isinstance(args[0], int):
                raise UnsafePickleError(
                    f"{self._source}: refusing {kind.__name__}({args[0]}) (an allocation sized by a "
                    "number in the file); this file may be malicious or is not an annotation file.")
            return kind(*args)

        return build

    def _checked_reconstruct(self, reconstruct):
        def build(subtype, shape, dtype_code):
            size = _shape_size(shape, self._source)
            if size > self._limit:
                self._refuse_size(f"a numpy array of shape {shape}", size)
            return reconstruct(subtype, shape, dtype_code)

        return build

    def _check_ndarray_call(self, args, kwargs=None) -> None:
        """``numpy.ndarray(shape, dtype=float, ...)`` called from the file: its size (shape ×
        itemsize) must fit in the file, checked before numpy allocates it."""
        bound = dict(zip(("shape", "dtype"), args))
        bound.update(kwargs or {})
        if "shape" not in bound:
            return  # numpy refuses the call itself, allocating nothing
        try:
            dtype = np.dtype(bound.get("dtype", float))
        except Exception:  # noqa: BLE001 (any unusable dtype)
            raise UnsafePickleError(f"{self._source}: invalid numpy array dtype {bound['dtype']!r}") from None
        size = _shape_size(bound["shape"], self._source)
        if size * max(dtype.itemsize, 1) > self._limit:
            self._refuse_size(f"a numpy array of shape {bound['shape']} and dtype {dtype}",
                              size * max(dtype.itemsize, 1))

    def load_reduce(self):
        if self.stack[-2] is np.ndarray:
            self._check_ndarray_call(self.stack[-1])
        super().load_reduce()

    def load_newobj(self):
        if self.stack[-2] is np.ndarray:
            self._check_ndarray_call(self.stack[-1])
        super().load_newobj()

    def load_newobj_ex(self):
        if self.stack[-3] is np.ndarray:
            self._check_ndarray_call(self.stack[-2], self.stack[-1])
        super().load_newobj_ex()

    def _instantiate(self, klass, args):  # OBJ and INST
        if klass is np.ndarray:
            self._check_ndarray_call(args)
        super()._instantiate(klass, args)

    dispatch[pickle.REDUCE[0]] = load_reduce
    dispatch[pickle.NEWOBJ[0]] = load_newobj
    dispatch[pickle.NEWOBJ_EX[0]] = load_newobj_ex

    def load_build(self):
        state, inst = self.stack[-1], self.stack[-2]
        if isinstance(inst, np.ndarray):
            self._check_array_state(state)
        super().load_build()

    dispatch[pickle.BUILD[0]] = load_build

    def _check_array_state(self, state) -> None:
        """``ndarray.__setstate__``'s state ``([version,] shape, dtype, is_fortran, data)`` must
        hold exactly the data its shape needs (numpy trusts the shape for object arrays)."""
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise UnsafePickleError(f"{self._source}: invalid numpy array state")
        shape, dtype, _, data = state[-4:]
        if not isinstance(dtype, np.dtype):
            raise UnsafePickleError(f"{self._source}: invalid numpy array dtype {dtype!r}")
        size = _shape_size(shape, self._source)
        if size * max(dtype.itemsize, 1) > self._limit:
            self._refuse_size(f"a numpy array of shape {shape}", size * dtype.itemsize)
        if dtype.hasobject:
            if not isinstance(data, list) or len(data) != size:
                raise UnsafePickleError(f"{self._source}: numpy object array of shape {shape} does not hold "
                                        f"{size} items")
        elif not isinstance(data, (bytes, bytearray, str)) or len(data) != size * dtype.itemsize:
            raise UnsafePickleError(f"{self._source}: numpy array of shape {shape} and dtype {dtype} does not "
                                    f"hold {size * dtype.itemsize} bytes of data")

    def persistent_load(self, pid):
        raise UnsafePickleError(f"{self._source}: persistent references are not allowed ({pid!r}).")


def loads(data: bytes, source: str = "<bytes>"):
    """Unpickle ``data`` allowing only plain data. ``source`` names it in error messages."""
    try:
        return _RestrictedUnpickler(io.BytesIO(data), source, limit=len(data)).load()
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
