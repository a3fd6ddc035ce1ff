"""The learner's process keeps freed tensor memory instead of faulting it in again."""

from __future__ import annotations

import platform
import subprocess
import sys
import textwrap

import pytest

from recsys_stream.learner.allocator import retain_freed_memory

# Each child measures the minor page faults of tensors allocated, written and freed in turn:
# 40 MB is above glibc's largest dynamic mmap threshold (32 MB), so with its defaults every
# such tensor is a fresh mapping whose ~10,000 pages fault in when written.
_FAULTS_OF_REPEATED_TENSORS = textwrap.dedent(
    """
    import resource, sys
    import torch
    from recsys_stream.learner.allocator import retain_freed_memory

    if sys.argv[1] == "retain":
        assert retain_freed_memory(256)
    torch.empty(10 * 2**20).fill_(1.0)  # the first one faults in either way
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(40):
        torch.empty(10 * 2**20).fill_(1.0)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    """
)


def _faults(mode: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", _FAULTS_OF_REPEATED_TENSORS, mode],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="tunes glibc's allocator")
def test_freed_tensor_memory_is_reused_instead_of_faulted_in_again() -> None:
    pages_per_tensor = 40 * 2**20 // 4096
    assert _faults("defaults") >= 40 * pages_per_tensor // 2
    # The heap may still grow a few times while it settles (three times in one run of 20
    # tensors); never once per tensor: at most a tenth of the tensors.
    assert _faults("retain") <= 4 * pages_per_tensor


def test_a_limit_of_0_leaves_the_allocator_alone() -> None:
    assert retain_freed_memory(0) is False
