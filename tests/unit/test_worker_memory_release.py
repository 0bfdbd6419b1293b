"""A worker's pool process gives back what a finished task freed (``workers/memory.py``)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from cloudbackup.workers.memory import _malloc_trim

# Run alone in a fresh interpreter: the test's own process holds whatever pytest allocated.
PROBE = textwrap.dedent(
    """
    import sys
    from cloudbackup.workers.memory import release_freed_memory

    def rss_mb():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // 1024

    base = rss_mb()
    # What a big task leaves: many malloc'd buffers (above Python's small-object size),
    # freed, below one that lives on and keeps the heap from shrinking by itself.
    held = [bytes([n % 251]) * 3000 for n in range(40_000)]
    kept = bytes(3000)
    del held
    freed = rss_mb()
    done = release_freed_memory()
    print(base, freed, rss_mb(), done, len(kept))
    """
)


@pytest.mark.skipif(_malloc_trim is None, reason="needs glibc's malloc_trim")
def test_memory_a_task_freed_goes_back_to_the_system() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True
    ).stdout.split()
    base, freed, after, done = int(out[0]), int(out[1]), int(out[2]), out[3]
    assert done == "True"
    assert freed - base > 80  # the allocator kept the ~120 MB freed
    assert after - base < 20  # and gave it back when asked
