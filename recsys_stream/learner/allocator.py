"""Keep freed tensor memory in the process for the next micro-batch, instead of giving it back
to the kernel and faulting it in again.

A training step allocates and frees tensors of a few MB each (a ``[528, 20, 64]`` context is
2.7 MB). glibc's allocator serves blocks that large with ``mmap``, or trims them off the heap
when they are freed, so every step touches fresh pages: ~2,200 page faults per micro-batch of
512 events on MovieLens 100K, which made the elementwise products of the step 5-10x slower than
the same products on warm memory. Raising glibc's mmap and trim thresholds keeps those blocks
for reuse (~25 faults a micro-batch); the step's time fell by ~30% (docs/benchmarks.md). This
is the tuning PyTorch's CPU performance guides make with jemalloc or tcmalloc, done here from
the process itself so that no launcher has to preload another allocator.

The price is memory: up to ``megabytes`` of freed memory stays in the process. On other C
libraries (musl, macOS) nothing changes.

>>> retain_freed_memory(0)
False
"""

from __future__ import annotations

import ctypes
import logging
import platform

__all__ = ["retain_freed_memory"]

log = logging.getLogger(__name__)

# mallopt's parameters, from glibc's malloc.h.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

_MALLOPT_MAX = 2**31 - 1
"""mallopt takes a C int."""
_OLD_GLIBC_MMAP_CAP = 32 * 2**20
"""Some glibc versions refuse an mmap threshold above half their 64 MB heap size."""

_retained_megabytes = 0
"""What this process last set (the setting is process-wide)."""


def retain_freed_memory(megabytes: int) -> bool:
    """Let glibc keep up to ``megabytes`` of freed memory, and serve blocks up to that size
    from its heap. Whether the process now does (False on other C libraries, or for 0).

    Process-wide and idempotent; a later call with a larger limit raises it, never lowers it
    (two learners in one process keep the larger need)."""
    global _retained_megabytes
    if megabytes <= 0 or platform.libc_ver()[0] != "glibc":
        return False
    if megabytes <= _retained_megabytes:
        return True
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    limit = min(megabytes * 2**20, _MALLOPT_MAX)
    # The full limit first, then the largest threshold an older glibc accepts (in order).
    sizes = (limit, min(limit, _OLD_GLIBC_MMAP_CAP))
    mmap_set = any(libc.mallopt(_M_MMAP_THRESHOLD, ctypes.c_int(size)) for size in sizes)
    if not mmap_set or not libc.mallopt(_M_TRIM_THRESHOLD, ctypes.c_int(limit)):
        log.warning("glibc refused to retain %d MB of freed memory", megabytes)
        return False
    _retained_megabytes = megabytes
    return True
