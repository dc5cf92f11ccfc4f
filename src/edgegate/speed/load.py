"""How busy the machine was while a benchmark ran, from the kernel's own counters.

A timing taken while other processes compete for the cores is not a timing of the model
alone. Two readings, both over the benchmark's whole window:

- *other processes' CPU*: machine-wide busy CPU time (``/proc/stat``) minus the CPU time of
  this process and its reaped children (``getrusage``), as cores kept busy on average;
- *CPU pressure*: the share of wall time in which at least one runnable task waited for a
  CPU (``/proc/pressure/cpu``, "some"), where the kernel provides it.

Where neither file exists (macOS, old kernels) only the 1-minute load average is kept and
contention is "unknown", never "none".
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path

_STAT = Path("/proc/stat")
_PSI = Path("/proc/pressure/cpu")
_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

# A window is contended when tasks waited for a CPU at least 10% of the time (the kernel's own
# measure, where it has one), else when other processes used more cores than the benchmark left
# free (at least a fifth of a core). Measured on a 2-core machine with a 1-thread benchmark:
# one other busy core left pressure at 1-2%; a second busy process raised it to 99%.
OTHER_CORES_CONTENDED = 0.2
PRESSURE_CONTENDED = 0.10


@dataclass(frozen=True)
class _Snapshot:
    wall: float
    busy_s: float | None  # machine-wide non-idle CPU seconds
    own_s: float  # this process + reaped children, user + system
    psi_us: int | None  # /proc/pressure/cpu "some" total, microseconds
    loadavg1: float | None


@dataclass(frozen=True)
class MachineLoad:
    wall_s: float
    other_cores: float | None  # CPU seconds of other processes per wall second
    cpu_pressure: float | None  # share of wall time some task waited for a CPU
    loadavg1_start: float | None
    loadavg1_end: float | None
    cpus: int
    threads: int | None = None  # the benchmark's threads per model (None: not known)

    @property
    def contended(self) -> bool | None:
        """True/False where the kernel says; None when nothing could be read."""
        if self.cpu_pressure is not None:
            return self.cpu_pressure >= PRESSURE_CONTENDED
        if self.other_cores is not None:
            free = max(0, self.cpus - (self.threads or self.cpus))
            return self.other_cores >= max(OTHER_CORES_CONTENDED, free)
        return None

    def describe(self) -> str:
        parts = []
        if self.other_cores is not None:
            parts.append(f"other processes kept {self.other_cores:.2f} of {self.cpus} cores busy")
        if self.cpu_pressure is not None:
            parts.append(f"tasks waited for a CPU {self.cpu_pressure:.0%} of the time")
        if not parts and self.loadavg1_end is not None:
            parts.append(f"1-min load average {self.loadavg1_end:.2f} on {self.cpus} cores")
        return "; ".join(parts) or "machine load not readable"

    def to_dict(self) -> dict[str, float | int | bool | str | None]:
        return {
            "wall_s": round(self.wall_s, 3),
            "other_cores": None if self.other_cores is None else round(self.other_cores, 3),
            "cpu_pressure": None if self.cpu_pressure is None else round(self.cpu_pressure, 4),
            "loadavg1_start": self.loadavg1_start,
            "loadavg1_end": self.loadavg1_end,
            "cpus": self.cpus,
            "threads": self.threads,
            "contended": self.contended,
            "description": self.describe(),
        }


def _busy_seconds() -> float | None:
    try:
        fields = _STAT.read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    ticks = [int(x) for x in fields[1:]]
    # user nice system idle iowait irq softirq steal [guest guest_nice]: guest time is already
    # counted in user, idle and iowait are not busy
    busy = sum(ticks[:8]) - ticks[3] - (ticks[4] if len(ticks) > 4 else 0)
    return busy / _HZ


def _psi_total_us() -> int | None:
    try:
        for line in _PSI.read_text().splitlines():
            if line.startswith("some "):
                return int(line.rsplit("total=", 1)[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _own_seconds() -> float:
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def _loadavg1() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def snapshot() -> _Snapshot:
    return _Snapshot(
        time.monotonic(), _busy_seconds(), _own_seconds(), _psi_total_us(), _loadavg1()
    )


def between(start: _Snapshot, end: _Snapshot, threads: int | None = None) -> MachineLoad:
    """The machine's load from ``start`` to ``end``. Children must have been reaped by
    ``end`` for their CPU time to count as this process's own."""
    wall = max(end.wall - start.wall, 1e-9)
    other = None
    if start.busy_s is not None and end.busy_s is not None:
        other = max(0.0, (end.busy_s - start.busy_s) - (end.own_s - start.own_s)) / wall
    pressure = None
    if start.psi_us is not None and end.psi_us is not None:
        pressure = min(1.0, max(0.0, (end.psi_us - start.psi_us) / 1e6 / wall))
    return MachineLoad(
        wall, other, pressure, start.loadavg1, end.loadavg1, os.cpu_count() or 1, threads
    )
