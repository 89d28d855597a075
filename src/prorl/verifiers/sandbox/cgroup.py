"""Cgroups for sandboxed runs: where they can be made (probed once per process) and one per run.

:func:`_probe_cgroup` finds a place where this process may create memory and pids cgroups (v2
first, then v1) and :func:`_remove_stale_cgroups` removes those left by trainers that died; both
run once, from the probe. :class:`_RunCgroup` is one run's cgroup: created with its limits before
the launch, joined by the child between fork and exec, killed and removed after the run.
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("prorl.verifiers.sandbox")  # one logger for the whole package

_CGROUP_PREFIX = "prorl-sandbox"
_run_counter = itertools.count()


@dataclass(frozen=True)
class _Cgroup:
    """Where per-run cgroups are created, for one cgroup version."""

    version: int
    """1 or 2."""
    memory_parent: str
    """Directory under which the run's memory cgroup is made (v2: the one directory for both)."""
    pids_parent: str
    """Directory under which the run's pids cgroup is made (v2: same as memory_parent)."""
    memsw: bool
    """v1 only: memory.memsw.limit_in_bytes exists (swap accounting on)."""


def _own_cgroup_paths() -> dict[str, str]:
    """Map controller name (``""`` for v2) to this process's cgroup path, from /proc/self/cgroup."""
    paths: dict[str, str] = {}
    try:
        text = Path("/proc/self/cgroup").read_text()
    except OSError:
        return paths
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            for controller in parts[1].split(","):
                paths[controller] = parts[2]
    return paths


def _try_cgroup_dir(path: str, files: dict[str, str]) -> bool:
    """Create ``path``, write ``files`` into it, remove it; True when all of that worked."""
    try:
        os.mkdir(path)
    except OSError:
        return False
    try:
        for name, value in files.items():
            with open(os.path.join(path, name), "w") as f:
                f.write(value)
        return True
    except OSError:
        return False
    finally:
        try:
            os.rmdir(path)
        except OSError:
            pass


def _probe_cgroup() -> tuple[_Cgroup | None, str]:
    """Find a writable place for per-run memory and pids cgroups (v2 first, then v1)."""
    root = "/sys/fs/cgroup"
    own = _own_cgroup_paths()
    probe = f"{_CGROUP_PREFIX}-probe-{os.getpid()}"
    if os.path.exists(f"{root}/cgroup.controllers") and "" in own:
        parent = os.path.normpath(f"{root}/{own['']}")
        try:
            enabled = Path(parent, "cgroup.subtree_control").read_text().split()
        except OSError:
            enabled = []
        if not {"memory", "pids"} <= set(enabled):
            try:  # fails with EBUSY when this cgroup holds processes (the v2 "no internal processes" rule)
                Path(parent, "cgroup.subtree_control").write_text("+memory +pids")
            except OSError as e:
                return None, f"cgroup v2: cannot enable memory+pids under {parent}: {e}"
        if _try_cgroup_dir(f"{parent}/{probe}", {"memory.max": str(1 << 30), "pids.max": "64"}):
            return _Cgroup(2, parent, parent, False), ""
        return None, f"cgroup v2: cannot create a child cgroup under {parent}"
    if os.path.isdir(f"{root}/memory") and os.path.isdir(f"{root}/pids"):
        memory = os.path.normpath(f"{root}/memory/{own.get('memory', '/')}")
        pids = os.path.normpath(f"{root}/pids/{own.get('pids', '/')}")
        memsw = os.path.exists(f"{memory}/memory.memsw.limit_in_bytes")
        if _try_cgroup_dir(f"{memory}/{probe}", {"memory.limit_in_bytes": str(1 << 30)}) and _try_cgroup_dir(
            f"{pids}/{probe}", {"pids.max": "64"}
        ):
            return _Cgroup(1, memory, pids, memsw), ""
        return None, f"cgroup v1: cannot create children under {memory} and {pids}"
    return None, "no cgroup v2 hierarchy and no cgroup v1 memory+pids controllers under /sys/fs/cgroup"


def _remove_stale_cgroups(where: _Cgroup) -> list[str]:
    """Remove per-run cgroups left by trainers that died mid-run (their pid is in the name); returns them.

    A trainer killed with SIGKILL cannot remove its run's cgroup; its processes die with it
    (``--die-with-parent``) but the empty directory stays until the next process probes.
    """
    removed = []
    for parent in {where.memory_parent, where.pids_parent}:
        try:
            names = os.listdir(parent)
        except OSError:
            continue
        for name in names:
            parts = name.split("-")
            if not name.startswith(_CGROUP_PREFIX + "-") or len(parts) != 4 or not parts[2].isdigit():
                continue
            try:
                os.kill(int(parts[2]), 0)
                continue  # its trainer is alive: not stale
            except ProcessLookupError:
                pass
            except OSError:
                continue
            path = os.path.join(parent, name)
            for _ in range(100):
                try:
                    os.rmdir(path)
                    removed.append(path)
                    break
                except OSError:
                    try:
                        for pid in Path(path, "cgroup.procs").read_text().split():
                            os.kill(int(pid), signal.SIGKILL)
                    except (OSError, ValueError):
                        break
                    time.sleep(0.01)
    return removed


class _RunCgroup:
    """The per-run cgroup(s): created before launch, limits written, killed and removed after."""

    def __init__(self, where: _Cgroup, memory_mb: int, max_tasks: int) -> None:
        name = f"{_CGROUP_PREFIX}-{os.getpid()}-{next(_run_counter)}"
        self.dirs = [os.path.join(where.memory_parent, name)]
        if where.pids_parent != where.memory_parent:
            self.dirs.append(os.path.join(where.pids_parent, name))
        self.version = where.version
        limit = str(memory_mb << 20)
        if where.version == 2:
            files = [(self.dirs[0], {"memory.max": limit, "memory.swap.max": "0", "pids.max": str(max_tasks)})]
        else:
            memory = {"memory.limit_in_bytes": limit}
            if where.memsw:
                memory["memory.memsw.limit_in_bytes"] = limit  # no swap: memsw == limit
            files = [(self.dirs[0], memory), (self.dirs[1], {"pids.max": str(max_tasks)})]
        for d in self.dirs:
            os.mkdir(d)
        try:
            for d, values in files:
                for name_, value in values.items():
                    try:
                        with open(os.path.join(d, name_), "w") as f:
                            f.write(value)
                    except OSError:
                        if name_ != "memory.swap.max":  # absent when swap accounting is off: harmless
                            raise
        except BaseException:
            self.remove()
            raise
        # Opened now, written by the child between fork and exec (no Python allocation needed there).
        self.procs_paths = [os.path.join(d, "cgroup.procs").encode() for d in self.dirs]

    def pids(self) -> set[int]:
        """Every task still in the run's cgroup(s)."""
        found: set[int] = set()
        for d in self.dirs:
            try:
                found.update(int(x) for x in Path(d, "cgroup.procs").read_text().split())
            except (OSError, ValueError):
                pass
        return found

    def kill(self) -> None:
        """SIGKILL everything in the cgroup (v2: cgroup.kill when the kernel has it)."""
        if self.version == 2:
            try:
                Path(self.dirs[0], "cgroup.kill").write_text("1")
                return
            except OSError:
                pass
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass

    def remove(self, patience_s: float = 2.0) -> None:
        """Kill what is left and remove the directories; dying tasks may take a few ms to leave."""
        deadline = time.monotonic() + patience_s
        for d in self.dirs:
            while True:
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError as e:
                    if e.errno != errno.EBUSY or time.monotonic() > deadline:
                        log.warning("prorl sandbox: could not remove cgroup %s: %s", d, e)
                        break
                    self.kill()
                    time.sleep(0.0003)  # tasks of a dead pid namespace leave within ~1 ms
