"""Re-export of :mod:`data_pipelines.safe_pickle` (the restricted unpickler lives in the data layer)."""

from data_pipelines.safe_pickle import UnsafePickleError, load, loads

__all__ = ["UnsafePickleError", "load", "loads"]
