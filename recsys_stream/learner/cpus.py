"""How many CPUs this process may use, for the learner's torch threads.

torch starts as many threads as the CPUs the process may run on, which a container's CPU limit
does not change: a trainer limited to 2 CPUs on a 32-core Kubernetes node would run 32 threads
in a quota of 2, and each of its kernels would wait for threads the quota had paused. The CPU
limit (cgroup v2 ``cpu.max``, or v1 ``cpu.cfs_quota_us`` over ``cpu.cfs_period_us``) caps the
count here, rounded up, as Go's automaxprocs and the JVM do.

>>> available_cpus() >= 1
True
"""

from __future__ import annotations

import math
import os
from pathlib import Path

__all__ = ["available_cpus", "cpu_limit"]

_CGROUP_ROOT = Path("/sys/fs/cgroup")


def available_cpus(cgroup_root: Path = _CGROUP_ROOT) -> int:
    """The CPUs this process may run on, capped by its cgroup's CPU limit (at least 1)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    limit = cpu_limit(cgroup_root)
    if limit is not None:
        cpus = min(cpus, math.ceil(limit))
    return max(1, cpus)


def cpu_limit(cgroup_root: Path = _CGROUP_ROOT) -> float | None:
    """The CPUs' worth of time the process's cgroup may use (None: no limit, or no cgroup).

    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> _ = (root / "cpu.max").write_text("150000 100000\\n")
    >>> cpu_limit(root)
    1.5
    """
    for path in _v2_files(cgroup_root):
        try:
            quota, period = path.read_text().split()[:2]
        except (OSError, ValueError):
            continue
        return None if quota == "max" else _ratio(quota, period)
    v1 = cgroup_root / "cpu"
    try:
        quota = (v1 / "cpu.cfs_quota_us").read_text().strip()
        period = (v1 / "cpu.cfs_period_us").read_text().strip()
    except OSError:
        return None
    return None if quota.startswith("-") else _ratio(quota, period)


def _v2_files(root: Path) -> list[Path]:
    """``cpu.max`` of this process's own cgroup (named in /proc/self/cgroup), then the root's
    (inside a container's cgroup namespace, the root is the container's cgroup)."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        lines = []
    own = [root / line[4:] / "cpu.max" for line in lines if line.startswith("0::/") and line[4:]]
    return [*own, root / "cpu.max"]


def _ratio(quota: str, period: str) -> float | None:
    try:
        ratio = int(quota) / int(period)
    except (ValueError, ZeroDivisionError):
        return None
    return ratio if ratio > 0 else None
