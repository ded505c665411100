"""numpy files (.npy, .npz) and pickles of arrays, read without running any of their code.

An array file's header is read first: plain dtypes are read as bytes, and an object
array (whose payload is a pickle) goes through the restricted unpickler, as does a
``.pkl`` file. What comes out is an array, a dict of arrays (keys are variables), or a
list/tuple of them (positions are variables, e.g. a saved ``(y_pred, y_test, ...)``).
"""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np
import pyarrow as pa

from materializer.errors import DataError
from materializer.readers import safepickle
from materializer.readers.columns import arrays_table
from materializer.tableio import reading


def read_pickle(path: Path, written: str, options: Mapping[str, Any]) -> pa.Table:
    with reading(path, written), open(path, "rb") as handle:
        value = safepickle.load(handle, written)
    return _table(value, written, options)


def read_npy(path: Path, written: str, options: Mapping[str, Any]) -> pa.Table:
    with reading(path, written), open(path, "rb") as handle:
        value = _npy(handle, written)
    return _table(value, written, options)


def read_npz(path: Path, written: str, options: Mapping[str, Any]) -> pa.Table:
    """Each member ``x.npy`` is the variable ``x``; only the chosen members are read."""
    with reading(path, written):
        try:
            with zipfile.ZipFile(path) as archive:
                members = {name.removesuffix(".npy"): name for name in archive.namelist()}
                chosen = options["variables"] or list(members)
                _check_present(chosen, members, written, "members")
                values = []
                for variable in chosen:
                    with archive.open(members[variable]) as handle:
                        values.append((variable, _npy(handle, written)))
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
            raise DataError(f"not a readable .npz archive: {exc}", file=written) from None
    return arrays_table(values, options["names"], written)


def _npy(handle: IO[bytes], written: str) -> Any:
    """One .npy array; an object array's pickled payload is read by the restricted unpickler."""
    try:
        version = np.lib.format.read_magic(handle)
        # Version 3.0 only allows UTF-8 field names in the same layout as 2.0.
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) \
            else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(handle)
    except (ValueError, EOFError, SyntaxError) as exc:
        raise DataError(f"not a readable .npy array: {exc}", file=written) from None
    if dtype.hasobject:
        return safepickle.load(handle, written)
    count = int(np.prod(shape, dtype=np.int64))
    data = handle.read(count * dtype.itemsize)
    if len(data) != count * dtype.itemsize:
        raise DataError(f"truncated .npy array: {len(data)} of {count * dtype.itemsize} "
                        "data bytes", file=written)
    return np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C")


def _table(value: Any, written: str, options: Mapping[str, Any]) -> pa.Table:
    """Variables of a container, or the array itself as ``value`` (``value_1`` … for N×K)."""
    container = _container(value)
    if container is None:
        if options["variables"]:
            raise DataError(f"holds one {type(value).__name__}, not named variables; leave "
                            "out read.variables", file=written)
        return arrays_table([("value", value)], options["names"], written)
    chosen = options["variables"] or list(container)
    _check_present(chosen, container, written, "keys")
    return arrays_table([(str(key), container[key]) for key in chosen], options["names"],
                        written)


def _container(value: Any) -> dict[Any, Any] | None:
    """A dict as is; by position, a list, tuple or object array whose first item is an
    array (``np.save`` of a tuple of arrays); None for an array or a list of values."""
    if isinstance(value, np.ndarray) and value.dtype.hasobject and value.ndim == 0:
        value = value.item()  # np.save of a dict
    if isinstance(value, dict):
        return value
    sequence = isinstance(value, list | tuple) or (
        isinstance(value, np.ndarray) and value.dtype.hasobject and value.ndim == 1)
    if sequence and len(value) and isinstance(value[0], np.ndarray | list | tuple):
        return dict(enumerate(value))
    return None


def _check_present(chosen: list[Any], found: Mapping[Any, Any], written: str,
                   kind: str) -> None:
    missing = [variable for variable in chosen if variable not in found]
    if missing:
        listed = ", ".join(repr(key) for key in found)  # a key 0 is not a key '0'
        raise DataError(f"has no variable {missing[0]!r}; {kind}: {listed}", file=written,
                        column=str(missing[0]))
