"""CPU time and peak memory of the stack's processes, per benchmark phase.

CPU is ``user + system`` from psutil, read at the start and the end of a phase (a process tree's children
are added for Postgres, whose backends are processes). Peak RSS comes from a background sampler (every
``interval`` seconds) and, for single processes on Linux, from the kernel's own high-water mark (``VmHWM``).

The sampler is a thread of the load generator's process, and listing a process tree's children reads every
process of the machine: its own CPU is left out of the load generator's (it costs per second, not per order, so
at a low throughput it showed as milliseconds of "load generator" CPU per order).
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field

import psutil

from benchmarks.stack import ProcessRef

__all__ = ["LOAD_GENERATOR", "CpuDelta", "ProcessStats", "tree_cpu_seconds"]

#: The role of this process (the benchmark's client).
LOAD_GENERATOR = "load generator"


def _tree(ref: ProcessRef) -> list[psutil.Process]:
    if ref.pid is None:
        return []
    try:
        root = psutil.Process(ref.pid)
    except psutil.Error:
        return []
    procs = [root]
    if ref.with_children:
        with contextlib.suppress(psutil.Error):
            procs += root.children(recursive=True)
    return procs


def _cpu(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            total += t.user + t.system
    return total


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) of process ``pid`` and its children so far (e.g. Postgres and its backends)."""
    return _cpu(_tree(ProcessRef("tree", pid, with_children=True)))


def _rss(procs: list[psutil.Process]) -> int:
    total = 0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


def _hwm(pid: int) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        for line in open(f"/proc/{pid}/status"):  # noqa: SIM115 - tiny file
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return None


@dataclass
class CpuDelta:
    """CPU seconds each role used between two readings, and the wall time between them."""

    wall_seconds: float
    cpu_seconds: dict[str, float] = field(default_factory=dict)

    def as_dict(self, completed: int | None = None) -> dict[str, object]:
        """Plain figures; with ``completed`` also CPU milliseconds per completed order."""
        total = sum(self.cpu_seconds.values())
        out: dict[str, object] = {
            "wall_seconds": round(self.wall_seconds, 3),
            "cpu_seconds": {k: round(v, 3) for k, v in self.cpu_seconds.items()},
            "cpu_share": {k: round(v / total, 3) if total else 0.0 for k, v in self.cpu_seconds.items()},
            "cores_busy": round(total / self.wall_seconds, 2) if self.wall_seconds else 0.0,
        }
        if completed:
            out["cpu_ms_per_order"] = {k: round(1000 * v / completed, 2) for k, v in self.cpu_seconds.items()}
            out["cpu_ms_per_order_total"] = round(1000 * total / completed, 2)
        return out


class ProcessStats:
    """Reads CPU per role and samples RSS in the background."""

    def __init__(self, refs: list[ProcessRef], *, interval: float = 0.25) -> None:
        """Watch ``refs`` plus this process (the load generator)."""
        import os

        self._refs = [*refs, ProcessRef(LOAD_GENERATOR, os.getpid())]
        self._interval = interval
        self._peak: dict[str, int] = {r.role: 0 for r in self._refs}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)
        #: CPU seconds the sampler thread has used so far (updated by the sampler after each round).
        self._sampler_cpu = 0.0

    def __enter__(self) -> ProcessStats:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=2)

    @property
    def roles(self) -> list[str]:
        """Roles watched, in order."""
        return [r.role for r in self._refs]

    @property
    def sampler_cpu_seconds(self) -> float:
        """CPU seconds the background sampler has used (left out of the load generator's)."""
        return self._sampler_cpu

    def pids(self) -> dict[str, int | None]:
        """Each role's (root) pid."""
        return {r.role: r.pid for r in self._refs}

    def cpu(self) -> tuple[float, dict[str, float]]:
        """A reading: (monotonic time, CPU seconds per role); the load generator's without the sampler's."""
        sampler = self._sampler_cpu
        readings = {r.role: _cpu(_tree(r)) for r in self._refs}
        readings[LOAD_GENERATOR] -= sampler
        return time.monotonic(), readings

    @staticmethod
    def delta(start: tuple[float, dict[str, float]], end: tuple[float, dict[str, float]]) -> CpuDelta:
        """CPU used between two readings."""
        return CpuDelta(end[0] - start[0], {k: max(end[1][k] - start[1].get(k, 0.0), 0.0) for k in end[1]})

    def peak_rss(self) -> dict[str, dict[str, object]]:
        """Peak RSS per role: sampled, and the kernel's high-water mark where it applies."""
        out: dict[str, dict[str, object]] = {}
        for r in self._refs:
            entry: dict[str, object] = {"sampled_peak_mb": round(self._peak[r.role] / 2**20, 1)}
            if r.pid is not None and not r.with_children:
                hwm = _hwm(r.pid)
                if hwm is not None:
                    entry["kernel_peak_mb"] = round(hwm / 2**20, 1)
            if r.with_children:
                entry["note"] = "sum over the process tree; shared memory counted once per process"
            out[r.role] = entry
        return out

    def _sample(self) -> None:
        while not self._stop.is_set():
            for r in self._refs:
                rss = _rss(_tree(r))
                if rss > self._peak[r.role]:
                    self._peak[r.role] = rss
            self._sampler_cpu = time.thread_time()
            self._stop.wait(self._interval)
