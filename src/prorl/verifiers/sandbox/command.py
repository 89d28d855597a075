"""What a sandboxed run executes: the bwrap command line, the child's set-up, the interpreter's argv.

Pure functions of values prepared by the caller, with no state of their own: the probe's trial run
(:mod:`prorl.verifiers.sandbox.probe`) and every real run (:mod:`prorl.verifiers.sandbox.run`) build
their commands here, so the probe tests exactly what a run will do.
"""

from __future__ import annotations

import functools
import math
import os
import resource
import sys
import sysconfig

SANDBOX_UID = 65534
"""The uid (and gid) the code runs as: "nobody" inside the user namespace, or for real in the fallback."""
WORKDIR = "/sandbox"
"""The private working directory as the sandboxed program sees it (bwrap modes)."""


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


def _python_argv(site_packages: bool) -> list[str]:
    """This interpreter: the virtual environment's when packages are wanted, else the base one, isolated."""
    if site_packages:
        return [sys.executable, "-I"]
    base = getattr(sys, "_base_executable", None) or sys.executable
    return [os.path.realpath(base), "-I"]
