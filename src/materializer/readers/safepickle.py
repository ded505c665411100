"""A pickle reader that builds numpy arrays and plain containers and nothing else.

A pickle is a program: loading one with ``pickle.load`` may call any importable
function (``os.system``). This unpickler resolves only the globals a pickled numpy
array, dtype or scalar needs, and sets, so no code from the file ever runs; any other
global is refused by name before it is looked up. Persistent ids are refused too (the
base class has no ``persistent_load``), and extension codes go through ``find_class``.
"""

from __future__ import annotations

import functools
import pickle
import struct
from typing import IO, Any

import numpy as np

from materializer.errors import DataError


@functools.cache
def allowed_globals() -> dict[tuple[str, str], Any]:
    """``(module, name)`` → object, for numpy under both of its module layouts.

    numpy 2 moved ``numpy.core`` to ``numpy._core``; a pickle names whichever wrote it.
    The callables are taken from numpy's own pickles, wherever this numpy keeps them.
    """
    reconstruct = np.empty(0).__reduce__()[0]
    frombuffer = np.empty(0).__reduce_ex__(5)[0]
    scalar = np.float64(0).__reduce__()[0]
    found: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray,
                                         ("numpy", "dtype"): np.dtype}
    for core in ("numpy.core", "numpy._core"):
        found[(f"{core}.multiarray", "_reconstruct")] = reconstruct
        found[(f"{core}.multiarray", "scalar")] = scalar
        found[(f"{core}.numeric", "_frombuffer")] = frombuffer
    for builtins in ("builtins", "__builtin__"):  # protocol 2 names the Python 2 module
        found[(builtins, "set")] = set
        found[(builtins, "frozenset")] = frozenset
    found[("collections", "OrderedDict")] = dict  # its items follow as for a dict
    # Protocols 0-2 write bytes as _codecs.encode(text, "latin1"); a pure function.
    found[("_codecs", "encode")] = _latin1_encode
    return found


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    if encoding != "latin1":
        raise pickle.UnpicklingError(f"_codecs.encode with {encoding!r}")
    return text.encode("latin1")


class _Forbidden(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose ``find_class`` knows only ``allowed_globals``."""

    def find_class(self, module: str, name: str) -> Any:
        found = allowed_globals().get((module, name))
        if found is None:
            raise _Forbidden(f"{module}.{name}")
        return found


def load(handle: IO[bytes], written: str) -> Any:
    """Unpickle one object from ``handle`` with the restricted unpickler."""
    try:
        return RestrictedUnpickler(handle).load()
    except _Forbidden as exc:
        raise DataError(f"the pickle needs the global {exc.name}, which is not allowed "
                        "(only numpy arrays, dtypes, scalars and plain containers are read)",
                        file=written) from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError,
            AttributeError, struct.error, MemoryError, OverflowError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"not a readable pickle (truncated or corrupt): {reason}",
                        file=written) from None
