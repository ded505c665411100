"""Which allocator Arrow's buffers come from in a process that joins tables.

A join allocates and frees buffers of megabytes all the time (a batch's columns, a
label file's keys). Arrow's default on Linux, mimalloc, hands those back to the kernel
within milliseconds, so each new buffer is fresh memory the kernel must fault in and
clear: 6 to 8 s of system time on a ten-million-clip join here. jemalloc keeps freed
pages for a while and reuses them; with a short decay its peak stays that of mimalloc.
"""

from __future__ import annotations

import os

DECAY_MS = 200
"""How long jemalloc keeps freed pages before returning them. Arrow's default, 1 s, held
70 to 90 MiB more at the peak of a streamed join; 0 ms was 1.24x slower on one; 100 and
200 ms measured alike."""


def use_jemalloc() -> None:
    """Make jemalloc Arrow's default pool, unless ``ARROW_DEFAULT_MEMORY_POOL`` names
    one or this pyarrow has no jemalloc."""
    import pyarrow as pa

    if not os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        try:
            pool = pa.jemalloc_memory_pool()
        except NotImplementedError:  # a build without it keeps its default
            pass
        else:
            pa.set_memory_pool(pool)
            pa.jemalloc_set_decay_ms(DECAY_MS)
