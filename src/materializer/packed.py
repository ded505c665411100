"""Text kept compressed in memory while nothing reads it.

The merge check keeps every clip's first raw text until the table's last batch, and
looks at one only when a later batch brings its key again, which a table with one row
per clip never does: 35 bytes a clip of KoNViD paths, 1.7 GB at fifty million clips.
zstd at Arrow's default level packs such a batch to a few bytes a clip in about 30 ns a
clip, and gives it back in a third of that.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

CODEC = "zstd" if pa.Codec.is_available("zstd") else None
"""None keeps the bytes as they are (a pyarrow built without zstd)."""


@dataclass(frozen=True)
class PackedText:
    """A string array as its validity bitmap, and its string lengths and bytes packed."""

    length: int
    validity: pa.Buffer | None
    lengths: pa.Buffer
    data: pa.Buffer
    data_size: int

    @classmethod
    def of(cls, text: pa.Array) -> PackedText:
        if text.offset:  # a slice: its own buffers, from its first string
            text = pa.concat_arrays([text])
        validity, offsets, data = text.buffers()
        bounds = np.frombuffer(offsets, dtype=np.int32, count=len(text) + 1)
        size = int(bounds[-1] - bounds[0])
        data = pa.py_buffer(b"") if data is None else data.slice(int(bounds[0]), size)
        return cls(len(text), validity, _pack(pa.py_buffer(np.diff(bounds))), _pack(data),
                   size)

    def unpack(self) -> pa.Array:
        lengths = np.frombuffer(_unpack(self.lengths, 4 * self.length), dtype=np.int32)
        offsets = np.zeros(self.length + 1, dtype=np.int32)
        np.cumsum(lengths, out=offsets[1:])
        return pa.Array.from_buffers(pa.string(), self.length, [
            self.validity, pa.py_buffer(offsets), _unpack(self.data, self.data_size)])


def _pack(buffer: pa.Buffer) -> pa.Buffer:
    return buffer if CODEC is None else pa.compress(buffer, codec=CODEC, asbytes=False)


def _unpack(buffer: pa.Buffer, size: int) -> pa.Buffer:
    return buffer if CODEC is None else \
        pa.decompress(buffer, decompressed_size=size, codec=CODEC, asbytes=False)
