"""One sandboxed run: working directory, launch, output capture with caps, deadline, killing the tree.

:func:`run` takes the cached setup from :mod:`prorl.verifiers.sandbox.probe`, makes the run's cgroup
(:mod:`prorl.verifiers.sandbox.cgroup`), builds the command (:mod:`prorl.verifiers.sandbox.command`),
launches it, reads both outputs up to their cap until the deadline, kills whatever is left and
removes everything the run made. :func:`run_python` runs Python source through it.
"""

from __future__ import annotations

import os
import selectors
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass

from prorl.verifiers.sandbox.cgroup import _RunCgroup
from prorl.verifiers.sandbox.command import _bwrap_argv, _make_preexec, _python_argv
from prorl.verifiers.sandbox.probe import _get_setup

_BWRAP_OVERHEAD_TASKS = 2
"""Tasks bwrap itself adds to the cgroup (outer bwrap, the namespace's init); not charged to the program."""


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
