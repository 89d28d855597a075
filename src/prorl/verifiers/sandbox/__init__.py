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

The interface is what this package exports: :func:`run`, :func:`run_python`, :func:`isolation`,
:class:`SandboxResult`, :data:`SANDBOX_UID`, :data:`WORKDIR`. Its modules are internal, split by
lifetime:

- :mod:`~prorl.verifiers.sandbox.probe`: what the machine offers (bwrap, a cgroup, a uid to drop
  to, the read-only mounts and the synthetic ``/etc``), probed once per process and cached;
  :func:`isolation`.
- :mod:`~prorl.verifiers.sandbox.cgroup`: where per-run cgroups can be made (found by the probe,
  stale ones cleaned there) and the per-run cgroup itself (created, killed, removed with each run).
- :mod:`~prorl.verifiers.sandbox.command`: what a run executes: the bwrap command line, the child's
  set-up between fork and exec, the interpreter's argv. Used by the probe's trial run and by every run.
- :mod:`~prorl.verifiers.sandbox.run`: one run: its working directory, the launch, output capture
  with caps, the deadline, killing the tree; :func:`run`, :func:`run_python`, :class:`SandboxResult`.

Nowhere else in prorl does Python code start a process with ``subprocess``, ``os.fork``, ``os.exec*``,
``os.system`` or ``os.spawn*`` (``tests/test_sandbox_layout.py`` checks the source). Not counted: the
verifier pool's ``multiprocessing`` fork server, and source text that runs inside a sandbox (the code
verifier's harness forks one child per test there).

>>> result = run_python("print(input()[::-1])", stdin=b"abc\\n")
>>> result.stdout, result.returncode, result.timed_out
(b'cba\\n', 0, False)
"""

from __future__ import annotations

from prorl.verifiers.sandbox.command import SANDBOX_UID, WORKDIR
from prorl.verifiers.sandbox.probe import isolation
from prorl.verifiers.sandbox.run import SandboxResult, run, run_python

__all__ = ["SANDBOX_UID", "WORKDIR", "SandboxResult", "isolation", "run", "run_python"]
