"""MATLAB .mat files, v4/v5/v7 (scipy.io) and v7.3 (HDF5, h5py), read as MATLAB means them.

A variable is named as in MATLAB, dotted into 1×1 structs
(``qualcommSubjectiveData.unBiasedMOS``). Both readers give the same values: arrays in
MATLAB's shape (HDF5 stores them transposed), ``double`` data that v5 stores as uint8 or
uint16 back as double, a cell array of strings or a char matrix as text (a char
matrix's rows without their space padding, as ``cellstr`` gives them).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from materializer.errors import DataError
from materializer.readers.columns import arrays_table
from materializer.tableio import reading

_NUMERIC = {"double", "single", "int8", "uint8", "int16", "uint16", "int32", "uint32",
            "int64", "uint64"}


def read_mat(path: Path, written: str, options: Mapping[str, Any]) -> pa.Table:
    """The chosen variables (default: every one) as columns named by their last part."""
    from scipy.io.matlab import MatReadError, matfile_version

    with reading(path, written):
        try:
            major, _ = matfile_version(str(path))
            read = _read_hdf5 if major == 2 else _read_v5
            values = read(path, written, options["variables"])
        except (FileNotFoundError, PermissionError, IsADirectoryError):
            raise  # tableio.reading names these
        except (OSError, MatReadError, ValueError, TypeError, KeyError, IndexError, EOFError,
                OverflowError, MemoryError, zlib.error, struct.error) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DataError(f"not a readable MATLAB file (truncated or corrupt): {reason}",
                            file=written) from None
    return arrays_table(values, options["names"], written)


def _read_v5(path: Path, written: str, variables: list[str] | None) \
        -> list[tuple[str, Any]]:
    from scipy.io import loadmat, whosmat

    tops = sorted({variable.split(".")[0] for variable in variables}) if variables else None
    found = {name: value for name, value in
             loadmat(str(path), variable_names=tops, mat_dtype=True).items()
             if not name.startswith("__")}  # __header__, __version__, __globals__
    missing = [top for top in tops or () if top not in found]
    if missing:  # only now list what the file holds
        raise _missing(missing[0], [name for name, _, _ in whosmat(str(path))], written)
    chosen = variables or list(found)
    return [(variable.split(".")[-1], _v5_value(_dotted(found, variable, written),
                                                variable, written))
            for variable in chosen]


def _dotted(found: Mapping[str, Any], variable: str, written: str) -> Any:
    """Follow ``a.b.c`` through 1×1 structs (structured arrays, as scipy reads them)."""
    top, *fields = variable.split(".")
    value, where = found[top], top
    for field in fields:
        if value.dtype.names is None:
            raise DataError(f"{where!r} is not a struct, so it has no field {field!r}",
                            file=written, column=variable)
        _check_struct(value.shape, where, written)
        _check_field(field, value.dtype.names, where, written)
        value, where = value[field].reshape(-1)[0], f"{where}.{field}"
    return value


def _v5_value(value: np.ndarray, variable: str, written: str) -> Any:
    if value.dtype.names is not None:
        raise _struct_error(variable, value.dtype.names, written)
    if value.dtype.kind == "U":  # a char matrix: one string per row
        return np.char.rstrip(value, " ")
    if value.dtype.hasobject:  # a cell array: each cell its own 1×L char array (or empty)
        return np.array([_v5_cell_text(cell, variable, written) for cell in value.flat],
                        dtype=object).reshape(value.shape)
    if value.dtype.kind not in "biuf":
        raise DataError(f"holds MATLAB data of dtype {value.dtype}, not numbers or text",
                        file=written, column=variable)
    return value


def _v5_cell_text(cell: Any, variable: str, written: str) -> str:
    if isinstance(cell, np.ndarray) and cell.size == 0:
        return ""  # '' or the [] that fills an unset cell
    if isinstance(cell, np.ndarray) and cell.dtype.kind == "U" and cell.size == 1:
        return str(cell.reshape(-1)[0])
    raise DataError("is a cell array holding something other than one string per cell",
                    file=written, column=variable)


# --- v7.3: HDF5 ----------------------------------------------------------------------


def _read_hdf5(path: Path, written: str, variables: list[str] | None) \
        -> list[tuple[str, Any]]:
    import h5py

    with h5py.File(path, "r") as mat:
        present = [name for name in mat if not name.startswith("#")]
        chosen = variables or present
        missing = [v for v in chosen if v.split(".")[0] not in present]
        if missing:
            raise _missing(missing[0].split(".")[0], present, written)
        return [(variable.split(".")[-1], _h5_value(mat, _h5_node(mat, variable, written),
                                                    variable, written))
                for variable in chosen]


def _h5_node(mat: Any, variable: str, written: str) -> Any:
    top, *fields = variable.split(".")
    node, where = mat[top], top
    for field in fields:
        if _class(node) != "struct" or not hasattr(node, "keys"):
            raise DataError(f"{where!r} is not a struct, so it has no field {field!r}",
                            file=written, column=variable)
        _check_field(field, list(node), where, written)
        node, where = node[field], f"{where}.{field}"
    return node


def _h5_value(mat: Any, node: Any, variable: str, written: str) -> Any:
    """A dataset as MATLAB holds it: transposed back, text decoded, classes kept."""
    kind = _class(node)
    if kind == "struct":
        raise _struct_error(variable, list(node) if hasattr(node, "keys") else [], written)
    if not hasattr(node, "dtype") or "MATLAB_sparse" in node.attrs:
        raise DataError(f"holds a MATLAB {kind or 'object'} that is not a plain array",
                        file=written, column=variable)
    if node.attrs.get("MATLAB_empty", 0):
        return np.array([], dtype=object if kind in ("char", "cell") else np.float64)
    data = node[()].T
    if kind == "char":
        return _h5_chars(data)
    if kind == "cell":
        # Each cell is a reference to its own dataset: read one at a time (the format's way).
        return np.array([_h5_cell_text(mat[ref], variable, written) for ref in data.flat],
                        dtype=object).reshape(data.shape)
    if kind == "logical":
        return data.astype(bool)
    if kind not in _NUMERIC or data.dtype.names is not None:  # complex is a compound
        raise DataError(f"holds MATLAB class {kind or data.dtype}, not numbers or text",
                        file=written, column=variable)
    return data


def _h5_chars(codes: np.ndarray) -> np.ndarray:
    """A char matrix (UTF-16 code units, rows × length) as one string per row."""
    codes = np.atleast_2d(codes)
    strings = np.ascontiguousarray(codes.astype("<u4")).view(f"<U{codes.shape[1]}")
    return np.char.rstrip(strings.reshape(-1), " ")


def _h5_cell_text(node: Any, variable: str, written: str) -> str:
    """One cell's 1×L char (stored L×1) as text; read per cell, so few attribute reads."""
    if _class(node) == "char":
        if node.ndim == 2 and node.shape[1] == 1:
            return node[()].astype("<u2").tobytes().decode("utf-16-le")
        if node.attrs.get("MATLAB_empty", 0):  # '' is stored as its dimensions, [0 0]
            return ""
    raise DataError("is a cell array holding something other than one string per cell",
                    file=written, column=variable)


def _class(node: Any) -> str:
    kind = node.attrs.get("MATLAB_class", b"")
    return kind.decode() if isinstance(kind, bytes) else str(kind)


# --- both ----------------------------------------------------------------------------


def _check_struct(shape: tuple[int, ...], where: str, written: str) -> None:
    if int(np.prod(shape)) != 1:
        size = "×".join(map(str, shape))
        raise DataError(f"{where!r} is a {size} struct array; only a 1×1 struct can be "
                        "named into", file=written, column=where)


def _struct_error(variable: str, fields: Any, written: str) -> DataError:
    return DataError(f"{variable!r} is a struct (fields: {', '.join(fields)}); name a field "
                     f"with read.variables, e.g. {variable}.{next(iter(fields), 'field')}",
                     file=written, column=variable)


def _missing(name: str, present: list[str], written: str) -> DataError:
    return DataError(f"has no variable {name!r}; variables: {', '.join(present)}",
                     file=written, column=name)


def _check_field(field: str, fields: Any, where: str, written: str) -> None:
    if field not in fields:
        raise DataError(f"struct {where!r} has no field {field!r}; fields: "
                        f"{', '.join(fields)}", file=written, column=f"{where}.{field}")
