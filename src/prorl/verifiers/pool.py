"""A pool of verifier worker processes: a hard wall-clock deadline per response, crash isolation, input order kept.

:meth:`ScoringPool.score_batch` gives every input exactly one :class:`Verdict`, in input order:

- a verifier that raises: ``Verdict(0, "verifier error: <ExcType: msg>", status="error")``;
- a verifier past its deadline: the worker is killed (SIGKILL, so its sandboxes die with it) and
  replaced, and the item gets ``Verdict(0, "timeout after Xs", status="timeout")``;
- a worker that dies (segfault, ``os._exit``, out of memory): that item gets
  ``Verdict(0, "worker crashed (exit code N)", status="error")`` and the worker is replaced.

Deadlines: ``per_domain_timeout_s.get(domain, timeout_s)`` seconds of wall clock from the moment the
item is handed to a worker. The default ``timeout_s`` of 30 s leaves room for the code verifier's
5 s test limit plus sandbox start-up, and for logic's isolated scorers (~3 s each, see
:mod:`prorl.verifiers.logic`). A worker's own start-up is not charged to any item: a worker gets
work only once it has reported ready.

Processes: workers are started with the ``"forkserver"`` method. A plain ``fork`` of a trainer that
has torch (and its thread pools) loaded can deadlock the child on a lock some thread held at the
fork; the fork server is a fresh single-threaded interpreter that never imports torch. It preloads
:data:`PRELOAD` (the verifiers, math-verify, Reasoning Gym) once, so every worker - and every
replacement after a timeout - starts in milliseconds with those modules already imported.

``num_workers=0`` scores in the calling process with :func:`prorl.verifiers.safe_score`-style error
handling, for debugging: NO deadlines apply there, and a crash takes the caller down.

Limits: one item is in flight per worker, so a batch takes at least its slowest item; killing a
worker loses that worker's warm caches (parsed ground truths, built Reasoning Gym scorers).

>>> from prorl.data.schema import Problem
>>> with ScoringPool(0) as pool:
...     pool.score_batch([Problem(id="m", domain="math", prompt="?", answer="3")], ["\\\\boxed{3}"])
[Verdict(score=1.0, reason='correct', status='ok')]
"""

from __future__ import annotations

import importlib
import multiprocessing
import signal
import time
from collections import defaultdict
from multiprocessing.connection import wait

from prorl.data.schema import Problem
from prorl.errors import ConfigError
from prorl.verifiers import error_verdict
from prorl.verifiers.verdict import Verdict

DEFAULT_SCORE_FN = "prorl.verifiers:score"
"""The function workers call, as ``"module:function"``; the pool catches what it raises."""

PRELOAD = ["prorl.verifiers", "prorl.verifiers.math", "prorl.verifiers.stem", "prorl.verifiers.logic",
           "math_verify", "reasoning_gym"]
"""Modules the fork server imports once, so that workers start warm (an import that fails is skipped)."""

START_TIMEOUT_S = 120.0
"""Seconds a new worker may take to report ready before it is killed and started again."""

MAX_START_FAILURES = 3
"""Workers failing to start this many times in a row (e.g. a score_fn that does not import) raise RuntimeError."""


def _resolve(path: str):
    module, _, name = path.partition(":")
    if not module or not name:
        raise ConfigError(f"score_fn {path!r}: expected 'module:function'")
    return getattr(importlib.import_module(module), name)


def _call(fn, problem: Problem, response: str) -> Verdict:
    try:
        verdict = fn(problem, response)
        if not isinstance(verdict, Verdict):
            raise TypeError(f"verifier returned {type(verdict).__name__}, expected Verdict")
        return verdict
    except Exception as exc:  # noqa: BLE001 - any verifier failure costs this one sample
        return error_verdict(exc)


def _worker_main(conn, score_fn: str, custom: dict | None = None) -> None:
    """Worker loop: receive (index, problem, response), send (index, score, reason, status); None stops."""
    # Ctrl-C or a preemption signal sent to the whole process group must not kill the scorers of the step
    # the trainer is finishing; the trainer ends the workers (or they see its pipe close).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if custom:
        from prorl.verifiers import use_custom

        use_custom(custom)
    fn = _resolve(score_fn)
    conn.send("ready")
    while True:
        try:
            job = conn.recv()
        except EOFError:  # the pool went away
            return
        if job is None:
            return
        index, problem, response = job
        verdict = _call(fn, problem, response)
        conn.send((index, verdict.score, verdict.reason, verdict.status))


class _Worker:
    """One worker process, its pipe, and the item it is scoring (if any)."""

    def __init__(self, ctx, score_fn: str, custom: dict | None = None) -> None:
        self.conn, child_conn = ctx.Pipe()
        self.process = ctx.Process(target=_worker_main, args=(child_conn, score_fn, custom), daemon=True)
        self.process.start()
        child_conn.close()
        self.started = time.monotonic()
        self.ready = False
        self.job: tuple[int, float] | None = None  # (item index, deadline)

    def kill(self) -> int | None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5.0)
        self.conn.close()
        return self.process.exitcode


class ScoringPool:
    """Score (problem, response) pairs in worker processes with a hard deadline per item."""

    def __init__(self, num_workers: int = 2, *, timeout_s: float = 30.0,
                 per_domain_timeout_s: dict[str, float] | None = None,
                 score_fn: str = DEFAULT_SCORE_FN, custom: dict[str, str] | None = None) -> None:
        """``num_workers`` processes (0: in-process, no deadlines); ``timeout_s`` the deadline of any
        domain not in ``per_domain_timeout_s``; ``score_fn`` the ``"module:function"`` workers call
        (tests point it at misbehaving verifiers); ``custom`` a user's scorers by domain (``reward.custom``),
        registered in this process and in every worker."""
        if num_workers < 0:
            raise ConfigError(f"ScoringPool: num_workers={num_workers}, expected >= 0")
        deadlines = {"*": timeout_s, **(per_domain_timeout_s or {})}
        bad = {k: v for k, v in deadlines.items() if not (isinstance(v, (int, float)) and v > 0)}
        if bad:
            raise ConfigError(f"ScoringPool: timeouts must be positive seconds, got {bad}")
        self.num_workers = num_workers
        self.timeout_s = float(timeout_s)
        self.per_domain_timeout_s = {k: float(v) for k, v in (per_domain_timeout_s or {}).items()}
        self.score_fn = score_fn
        self.custom = dict(custom or {})
        if self.custom:
            from prorl.verifiers import use_custom

            use_custom(self.custom)  # here too: a wrong path fails now, naming the setting
        self._stats: dict[str, float] = defaultdict(float)
        self._workers: list[_Worker] = []
        self._ctx = None
        self._closed = False
        self._start_failures = 0
        if num_workers:
            self._ctx = multiprocessing.get_context("forkserver")
            self._ctx.set_forkserver_preload(PRELOAD)  # takes effect only if the server is not running yet
            self._workers = [_Worker(self._ctx, score_fn, self.custom) for _ in range(num_workers)]
        else:
            self._fn = _resolve(score_fn)

    def deadline_for(self, domain: str) -> float:
        """Seconds an item of ``domain`` may take."""
        return self.per_domain_timeout_s.get(domain, self.timeout_s)

    def score_batch(self, problems: list[Problem], responses: list[str]) -> list[Verdict]:
        """One verdict per (problem, response), in input order."""
        if self._closed:
            raise RuntimeError("ScoringPool.score_batch called after close()")
        if len(problems) != len(responses):
            raise ValueError(f"score_batch: {len(problems)} problems but {len(responses)} responses")
        if self.num_workers == 0:
            from prorl.verifiers.math import without_time_limits

            with without_time_limits():  # no deadlines in-process: verdicts must not depend on the load
                verdicts = [_call(self._fn, p, r) for p, r in zip(problems, responses)]
        else:
            verdicts = self._score_in_workers(problems, responses)
        for problem, verdict in zip(problems, verdicts):
            self._count(problem.domain, verdict)
        return verdicts

    def _score_in_workers(self, problems: list[Problem], responses: list[str]) -> list[Verdict]:
        results: list[Verdict | None] = [None] * len(problems)
        pending = list(range(len(problems)))[::-1]  # a stack: pop() hands out items in input order
        remaining = len(problems)
        while remaining:
            now = time.monotonic()
            for i, worker in enumerate(self._workers):
                if worker.ready and worker.job is None and pending:
                    index = pending.pop()
                    try:
                        worker.conn.send((index, problems[index], responses[index]))
                    except (BrokenPipeError, OSError):  # died between items: retry the item elsewhere
                        pending.append(index)
                        self._replace(i)
                        continue
                    worker.job = (index, now + self.deadline_for(problems[index].domain))
            busy = [w for w in self._workers if w.job is not None or not w.ready]
            wake = [w.conn for w in busy] + [w.process.sentinel for w in busy]
            horizon = min([w.job[1] for w in busy if w.job] +
                          [w.started + START_TIMEOUT_S for w in busy if not w.ready] + [now + 1.0])
            wait(wake, timeout=max(0.0, horizon - time.monotonic()))
            for i, worker in enumerate(self._workers):
                remaining -= self._collect(i, worker, problems, results)
        return results  # type: ignore[return-value]  # every slot was filled: remaining reached 0

    def _collect(self, i: int, worker: _Worker, problems: list[Problem], results: list) -> int:
        """Read what worker ``i`` has to say; kill it on a passed deadline or a crash. Returns items finished."""
        try:
            if worker.conn.poll():
                message = worker.conn.recv()
                if message == "ready":
                    worker.ready = True
                    self._start_failures = 0
                    return 0
                index, value, reason, status = message
                results[index] = Verdict(value, reason, status)
                worker.job = None
                return 1
        except (EOFError, OSError):
            worker.process.join(1.0)  # died: let it be reaped, then handle it below
        now = time.monotonic()
        if worker.job is not None:
            index, deadline = worker.job
            if not worker.process.is_alive():
                code = self._replace(i)
                results[index] = Verdict(0.0, f"worker crashed (exit code {code})", status="error")
                self._stats[f"verifier/crashes/{problems[index].domain}"] += 1
                return 1
            if now > deadline:
                self._replace(i)
                results[index] = Verdict(0.0, f"timeout after {self.deadline_for(problems[index].domain):g}s",
                                         status="timeout")
                return 1
        elif not worker.ready and (not worker.process.is_alive() or now > worker.started + START_TIMEOUT_S):
            self._start_failures += 1
            if self._start_failures > MAX_START_FAILURES:
                self.close()
                raise RuntimeError(f"verifier workers keep failing to start (score_fn {self.score_fn!r}, "
                                   f"last exit code {worker.process.exitcode}); see their stderr above")
            self._replace(i)
        return 0

    def _replace(self, i: int) -> int | None:
        code = self._workers[i].kill()
        self._stats["verifier/worker_restarts"] += 1
        self._workers[i] = _Worker(self._ctx, self.score_fn, self.custom)
        return code

    def _count(self, domain: str, verdict: Verdict) -> None:
        self._stats[f"verifier/scored/{domain}"] += 1
        if verdict.status == "error":
            self._stats[f"verifier/errors/{domain}"] += 1
        elif verdict.status == "timeout":
            self._stats[f"verifier/timeouts/{domain}"] += 1

    def stats(self) -> dict[str, float]:
        """Cumulative counts since the pool started: ``verifier/scored|errors|timeouts|crashes/<domain>``,
        ``verifier/worker_restarts``. Crashes are also counted in errors."""
        return dict(self._stats)

    def close(self) -> None:
        """Stop the workers (politely, then by force). Idempotent."""
        if self._closed:
            return
        self._closed = True
        for worker in self._workers:
            try:
                if worker.job is None and worker.ready:
                    worker.conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        for worker in self._workers:
            worker.process.join(1.0)
            worker.kill()
        self._workers = []

    def __enter__(self) -> ScoringPool:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __del__(self) -> None:  # a forgotten close() must not leave workers behind
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown: modules may already be gone
            pass
