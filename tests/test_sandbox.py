"""Adversarial tests of prorl.verifiers.sandbox: one attack per test, each asserting the containment held.

Every test also bounds its own time: a containment that fails by hanging fails here by the assertion on
``elapsed_s`` (and by pytest-timeout as the last resort). The tests that need namespaces skip, saying so,
on a machine where only the rlimit fallback exists; the machine this project targets has bwrap+cgroup.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid

import pytest

from prorl.verifiers import sandbox
from prorl.verifiers.sandbox import cgroup, probe

ISOLATION = sandbox.isolation()
needs_bwrap = pytest.mark.skipif(not ISOLATION.startswith("bwrap"), reason=f"no namespaces here ({ISOLATION})")
needs_tree_limits = pytest.mark.skipif("cgroup" not in ISOLATION and not ISOLATION.startswith("bwrap"),
                                       reason=f"no tree-wide limits here ({ISOLATION})")  # fmt: skip


def py(source: str, **kwargs) -> sandbox.SandboxResult:
    """Run dedented Python source in the sandbox."""
    return sandbox.run_python(textwrap.dedent(source), **kwargs)


def processes_with(marker: str) -> list[int]:
    """Host pids whose command line contains ``marker`` (zombies excluded: they hold no resources)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
            with open(f"/proc/{entry}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker.encode() in cmdline and state != "Z":
            found.append(int(entry))
    return found


# ---------------------------------------------------------------------------------------------
# Normal programs


@pytest.mark.parametrize(
    "source, stdin, expected_stdout",
    [
        ("print(1)", b"", b"1\n"),
        ("print(input()[::-1])", b"abc\n", b"cba\n"),
        ("import sys; print(sum(map(int, sys.stdin.read().split())))", b"1 2 3 4", b"10\n"),
        # 4 MB of stdin through a program that echoes it: the feeder must not deadlock on full pipes.
        ("import sys; sys.stdout.write(sys.stdin.read())", b"x" * (4 << 20), b"x" * (4 << 20)),
    ],
    ids=["print", "reverse", "sum", "4MB-echo"],
)
def test_stdin_stdout_round_trip(source, stdin, expected_stdout):
    r = sandbox.run_python(source, stdin=stdin, max_output_bytes=8 << 20)
    assert r.stdout == expected_stdout
    assert (r.returncode, r.timed_out, r.output_truncated) == (0, False, False)
    assert r.isolation == ISOLATION


def test_files_are_in_the_working_directory_and_exit_code_and_stderr_come_back():
    r = sandbox.run(["/bin/sh", "-c", "cat data/in.txt; echo oops >&2; exit 7"], files={"data/in.txt": "hello"})
    assert (r.stdout, r.stderr, r.returncode) == (b"hello", b"oops\n", 7)


@needs_bwrap  # the fallbacks do not mask the base interpreter's site-packages
def test_site_packages_flag_controls_access_to_installed_packages():
    # yaml is installed in this environment only, not in the base interpreter.
    isolated = py("import yaml")
    with_packages = py("import yaml; print('ok')", site_packages=True)
    assert isolated.returncode != 0 and b"ModuleNotFoundError" in isolated.stderr
    assert with_packages.stdout == b"ok\n", with_packages.stderr


def test_file_names_escaping_the_working_directory_are_refused():
    with pytest.raises(ValueError, match="relative path"):
        sandbox.run(["/bin/true"], files={"../escape.txt": "x"})


def test_concurrent_runs_do_not_mix_and_leave_no_cgroups():
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda k: sandbox.run_python(f"print({k} * 2)"), range(12)))
    assert [r.stdout for r in results] == [f"{k * 2}\n".encode() for k in range(12)]
    setup = probe._get_setup()
    if setup.cgroup is not None:
        for parent in {setup.cgroup.memory_parent, setup.cgroup.pids_parent}:
            assert not [n for n in os.listdir(parent) if n.startswith(f"prorl-sandbox-{os.getpid()}-")]


# ---------------------------------------------------------------------------------------------
# Time


@pytest.mark.parametrize(
    "source",
    ["while True: pass", "import time; time.sleep(1000)"],
    ids=["infinite-loop", "long-sleep"],
)
def test_deadline_kills_the_program(source):
    r = sandbox.run_python(source, timeout_s=1.0)
    assert r.timed_out and r.returncode is None
    assert 1.0 <= r.elapsed_s < 2.0


def test_program_closing_its_outputs_is_still_held_to_the_deadline():
    r = py("import os, time\nos.close(1)\nos.close(2)\ntime.sleep(1000)", timeout_s=1.0)
    assert r.timed_out and r.returncode is None and 1.0 <= r.elapsed_s < 2.0


def test_program_ignoring_sigterm_is_still_killed():
    r = py(
        """
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("ready", flush=True)
        time.sleep(1000)
        """,
        timeout_s=1.0,
    )
    assert r.timed_out and r.stdout == b"ready\n" and r.elapsed_s < 2.0


# ---------------------------------------------------------------------------------------------
# Processes and memory


@needs_tree_limits
def test_fork_bomb_is_bounded_and_the_host_can_still_fork():
    marker = f"bomb-{uuid.uuid4().hex}"
    r = py(
        f"""
        import os, sys
        os.execv(sys.executable, [sys.executable, "-c", "import os\\nwhile True:\\n  try: os.fork()\\n  except OSError: pass", "{marker}"])
        """,
        timeout_s=2.0,
        max_processes=32,
    )
    assert r.timed_out and r.elapsed_s < 4.0
    assert processes_with(marker) == []  # nothing of the bomb survived the run
    assert subprocess.run(["/bin/true"]).returncode == 0  # the host can still start processes


@needs_tree_limits
def test_process_limit_holds_even_when_the_trainer_is_root():
    # Count how many children can exist at once; the limit must bind below max_processes.
    r = py(
        """
        import os, time
        made = 0
        for _ in range(200):
            try:
                if os.fork() == 0:
                    time.sleep(30)
                    os._exit(0)
                made += 1
            except OSError:
                break
        print(made)
        """,
        timeout_s=5.0,
        max_processes=16,
    )
    assert r.returncode == 0, r.stderr
    assert int(r.stdout) == 15  # the program itself is one of the 16


@needs_tree_limits
def test_10gb_allocation_fails():
    r = py(
        """
        block = bytearray(10 * 1024**3)  # zero-filled: every page is touched
        print("allocated", len(block))
        """,
        timeout_s=10.0,
        memory_mb=512,
    )
    assert b"allocated" not in r.stdout
    assert r.returncode != 0 and not r.timed_out  # MemoryError, or the cgroup's OOM kill


@needs_bwrap
def test_memory_limit_binds_the_whole_tree_not_each_process():
    # Four processes of 200 MB each stay under a per-process limit of 512 MB but not under a tree limit.
    if "cgroup" not in ISOLATION:
        pytest.skip("tree-wide memory limit needs a cgroup")
    r = py(
        """
        import os, time
        for _ in range(4):
            if os.fork() == 0:
                block = bytearray(200 * 1024**2)
                time.sleep(1)  # hold it while the siblings allocate theirs
                os._exit(0)
        statuses = [os.wait()[1] for _ in range(4)]
        print(sum(1 for s in statuses if s == 0))
        """,
        timeout_s=8.0,
        memory_mb=512,
    )
    assert r.returncode == 0, r.stderr
    assert int(r.stdout) < 4  # at least one child was killed by the cgroup's limit


# ---------------------------------------------------------------------------------------------
# Files


@needs_bwrap
def test_writing_outside_the_sandbox_fails(tmp_path):
    os.chmod(tmp_path, 0o777)  # even a world-writable host directory must stay untouched
    targets = [tmp_path / "pwned.txt", "/usr/pwned.txt", "/etc/pwned.txt", f"{sys.base_prefix}/pwned.txt"]
    r = py(
        f"""
        for path in {[str(t) for t in targets]!r}:
            try:
                open(path, "w").write("pwned")
                print("WROTE", path)
            except OSError as e:
                print("refused", path, type(e).__name__)
        """
    )
    assert r.returncode == 0, r.stderr
    assert b"WROTE" not in r.stdout and r.stdout.count(b"refused") == len(targets)
    assert not any(os.path.exists(t) for t in targets)


@needs_bwrap
def test_host_etc_passwd_is_not_visible():
    with open("/etc/passwd") as f:
        host_lines = [line for line in f.read().splitlines() if line]
    r = py("print(open('/etc/passwd').read())")
    assert r.returncode == 0, r.stderr
    seen = r.stdout.decode().splitlines()
    assert host_lines and not set(host_lines) & set(seen)  # the synthetic file shares no line with the host's


@needs_bwrap
def test_repository_and_environment_are_not_mounted():
    here = os.path.abspath(__file__)
    hidden = [here, os.path.join(os.path.dirname(os.path.dirname(here)), "pyproject.toml"),
              os.path.join(sys.prefix, "pyvenv.cfg")]  # fmt: skip
    assert all(os.path.exists(p) for p in hidden)  # self-check: they exist on the host
    r = py(f"import os; print([os.path.exists(p) for p in {hidden!r}])")
    assert r.stdout == b"[False, False, False]\n", r.stderr


# ---------------------------------------------------------------------------------------------
# Network


@needs_bwrap
def test_cannot_connect_to_the_hosts_loopback():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        # Self-check: the listener is reachable from an ordinary process on the host.
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            accepted, _ = server.accept()
            accepted.close()
        r = py(
            f"""
            import socket
            try:
                socket.create_connection(("127.0.0.1", {port}), timeout=2)
                print("CONNECTED")
            except OSError as e:
                print("refused", type(e).__name__)
            """
        )
        server.setblocking(False)
        with pytest.raises(BlockingIOError):
            server.accept()  # no connection arrived from the sandbox
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(b"refused")


# ---------------------------------------------------------------------------------------------
# The parent and escapes


@needs_bwrap
def test_killing_the_parent_and_everything_leaves_the_host_alive():
    bystander = subprocess.Popen(["sleep", "60"])  # a host process kill -9 -1 would reach without a pid namespace
    try:
        r = py(
            f"""
            import os, signal, subprocess
            for target in (os.getppid(), 1, {os.getpid()}, {bystander.pid}, -1):
                try:
                    os.kill(target, signal.SIGKILL)
                except OSError:
                    pass
            subprocess.run(["/bin/sh", "-c", "kill -9 -1"])
            print("still here")
            """,
            timeout_s=3.0,
        )
        assert bystander.poll() is None  # the bystander survived
        assert r.elapsed_s < 3.5
    finally:
        bystander.kill()
        bystander.wait()
    # And the sandbox still works afterwards.
    assert sandbox.run_python("print(1)").stdout == b"1\n"


@needs_bwrap
def test_double_forked_daemon_does_not_outlive_the_run():
    marker = f"daemon-{uuid.uuid4().hex}"
    r = py(
        f"""
        import os, sys, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                # The grandchild: a daemon writing a heartbeat, holding stdout open.
                os.execv(sys.executable, [sys.executable, "-c",
                         "import time\\nwhile True:\\n  open('/tmp/hb', 'a').write('.'); print('beat', flush=True); time.sleep(0.02)",
                         "{marker}"])
            os._exit(0)
        while not os.path.exists("/tmp/hb"):
            time.sleep(0.01)
        print("daemon started", flush=True)
        """,
        timeout_s=5.0,
    )
    assert b"daemon started" in r.stdout and b"beat" in r.stdout  # the daemon really ran
    assert r.returncode == 0 and not r.timed_out
    assert r.elapsed_s < 3.0  # the run ended with its main program, not at the deadline
    assert processes_with(marker) == []  # and the daemon is gone


@needs_bwrap
def test_sandbox_dies_with_the_trainer():
    marker = f"orphan-{uuid.uuid4().hex}"
    # The marker is spelled backwards in the trainer's own command line, so only the sandboxed program matches.
    inner = f"import os, sys; os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(60)', '{marker[::-1]}'[::-1]])"
    trainer = subprocess.Popen(
        [sys.executable, "-c", f"from prorl.verifiers import sandbox; sandbox.run_python({inner!r}, timeout_s=60)"]
    )
    try:
        for _ in range(500):
            if processes_with(marker):
                break
            time.sleep(0.01)
        assert processes_with(marker), "the sandboxed program never started"
    finally:
        trainer.kill()  # SIGKILL: the trainer gets no chance to clean up
        trainer.wait()
    for _ in range(200):  # the kernel delivers the parent-death signals asynchronously
        if not processes_with(marker):
            break
        time.sleep(0.01)
    assert processes_with(marker) == []
    # The dead trainer's cgroup is cleaned up by the next process that probes (here: this one, by hand).
    setup = probe._get_setup()
    if setup.cgroup is not None:
        removed = cgroup._remove_stale_cgroups(setup.cgroup)
        assert removed and all(f"-{trainer.pid}-" in path for path in removed)


# ---------------------------------------------------------------------------------------------
# Output


def test_100mb_of_output_is_truncated_at_the_cap_quickly():
    r = py(
        """
        import sys
        chunk = b"x" * (1 << 20)
        for _ in range(100):
            sys.stdout.buffer.write(chunk)
        print("done", file=sys.stderr)
        """,
        max_output_bytes=1 << 20,
        timeout_s=10.0,
    )
    assert r.output_truncated and len(r.stdout) == 1 << 20
    assert b"done" not in r.stderr  # the run was cut, not read to the end
    assert r.elapsed_s < 2.0


# ---------------------------------------------------------------------------------------------
# The fallback


def test_fallback_is_announced_and_still_enforces_the_deadline(monkeypatch):
    drop = probe._can_drop_uid()
    weak = probe._Setup("rlimit-only", None, None, (), "bubblewrap not found (forced by a test)", drop)
    monkeypatch.setattr(probe, "_probe", lambda: weak)
    monkeypatch.setattr(probe, "_setup", None)
    with pytest.warns(RuntimeWarning, match="rlimit-only"):
        assert sandbox.isolation() == "rlimit-only"
    r = sandbox.run_python("import time; print('hi', flush=True); time.sleep(100)", timeout_s=1.0)
    assert (r.isolation, r.timed_out, r.stdout) == ("rlimit-only", True, b"hi\n")
    assert r.elapsed_s < 2.0
    r = sandbox.run_python("import os; print(os.getuid())")
    assert r.stdout == f"{sandbox.SANDBOX_UID if drop else os.getuid()}\n".encode()
    # The warning is given once, not at every run.
    with __import__("warnings").catch_warnings():
        __import__("warnings").simplefilter("error")
        sandbox.isolation()
