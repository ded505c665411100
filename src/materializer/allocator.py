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


CONF_ENV = "JE_ARROW_MALLOC_CONF"
"""Where Arrow's jemalloc reads its options, once, when Arrow's library is loaded (in a
process that has already imported pyarrow, setting it changes nothing)."""
ARENAS = 1
"""jemalloc's arenas. Its default (four a core) gives each thread its own, so pages a
worker thread freed (a batch's keys, normalised off the main thread) wait there while
the main thread faults in new ones. With one arena, on the project's 2-core machine: a
join of KoNViD-150k's size peaked 28 MiB lower, and one of ten million clips took 0.89x
the time at the same peak (3 pairs)."""


def use_jemalloc() -> None:
    """Make jemalloc Arrow's default pool, with ``ARENAS`` arenas unless
    ``JE_ARROW_MALLOC_CONF`` names a number; unless ``ARROW_DEFAULT_MEMORY_POOL`` names
    a pool, or this pyarrow has no jemalloc."""
    if os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        return
    conf = os.environ.get(CONF_ENV, "")
    if "narenas" not in conf:
        os.environ[CONF_ENV] = ",".join(filter(None, [conf, f"narenas:{ARENAS}"]))
    import pyarrow as pa  # after: jemalloc reads its options when Arrow's library loads

    try:
        pool = pa.jemalloc_memory_pool()
    except NotImplementedError:  # a build without it keeps its default
        return
    pa.set_memory_pool(pool)
    pa.jemalloc_set_decay_ms(DECAY_MS)
