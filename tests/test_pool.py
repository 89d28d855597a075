"""Tests of prorl.verifiers.pool.ScoringPool: order, raising / hanging / crashing verifiers, recovery, stats.

Misbehaviour is injected through the pool's ``score_fn`` (a "module:function" path the workers
import): :func:`misbehaving` below reads the response as a command. This module is importable in
the workers because pytest puts tests/ on sys.path and the fork server inherits it.
"""

from __future__ import annotations

import ctypes
import os
import time

import pytest

from prorl.data.schema import Problem
from prorl.verifiers.pool import ScoringPool
from prorl.verifiers.verdict import Verdict

HOOK = "test_pool:misbehaving"


def misbehaving(problem: Problem, response: str) -> Verdict:
    """A verifier that does what the response says: hang, exit, segfault, raise, or compare with the answer."""
    if response == "hang":
        time.sleep(600)
    if response == "exit":
        os._exit(7)
    if response == "segfault":
        ctypes.string_at(0)  # reads address 0: SIGSEGV
    if response == "raise":
        raise RuntimeError("boom")
    if response.startswith("sleep "):
        time.sleep(float(response.split()[1]))
    return Verdict(float(response == problem.answer), f"pid {os.getpid()}")


def sandbox_etc_dir(problem: Problem, response: str) -> Verdict:
    """A verifier that probes the sandbox in its worker; the reason is the synthetic /etc it made ("" without bwrap)."""
    from prorl.verifiers.sandbox import probe

    mounts = probe._get_setup().mounts
    return Verdict(0.0, mounts[mounts.index("/etc") - 1] if "/etc" in mounts else "")


def make(domain: str, answer: str, i: int = 0) -> Problem:
    return Problem(id=f"{domain}-{i}", domain=domain, prompt="?", answer=answer)


@pytest.fixture(scope="module")
def pool():
    with ScoringPool(2, timeout_s=1.5, score_fn=HOOK) as p:
        yield p


def test_order_is_preserved_with_items_of_uneven_duration(pool):
    # Early items sleep longer, so results arrive out of order; they must come back in input order.
    problems = [make("math", str(i), i) for i in range(8)]
    responses = [f"sleep {0.2 if i < 2 else 0.0}" if i % 3 == 0 else str(i) for i in range(8)]
    verdicts = pool.score_batch(problems, responses)
    assert [v.score for v in verdicts] == [0.0 if i % 3 == 0 else 1.0 for i in range(8)]
    assert all(v.status == "ok" for v in verdicts)


@pytest.mark.parametrize("response, status, reason_start", [
    ("raise", "error", "verifier error: RuntimeError: boom"),
    ("hang", "timeout", "timeout after 1.5s"),
    ("exit", "error", "worker crashed (exit code 7)"),
    ("segfault", "error", "worker crashed (exit code -11)"),
])
def test_a_misbehaving_verifier_costs_one_item_and_the_pool_goes_on(pool, response, status, reason_start):
    problems = [make("logic", "a", 0), make("logic", "b", 1), make("logic", "c", 2)]
    verdicts = pool.score_batch(problems, ["a", response, "c"])
    assert verdicts[0] == Verdict(1.0, verdicts[0].reason)
    assert verdicts[2].score == 1.0
    assert verdicts[1].score == 0.0 and verdicts[1].status == status
    assert verdicts[1].reason.startswith(reason_start), verdicts[1].reason
    # the replaced worker scores later batches correctly
    again = pool.score_batch([make("math", str(i), i) for i in range(4)], ["0", "x", "2", "3"])
    assert [v.score for v in again] == [1.0, 0.0, 1.0, 1.0]


def test_timeout_is_enforced_in_wall_clock():
    with ScoringPool(1, timeout_s=30.0, per_domain_timeout_s={"code": 0.5}, score_fn=HOOK) as p:
        t0 = time.monotonic()
        [verdict] = p.score_batch([make("code", "x")], ["hang"])
        elapsed = time.monotonic() - t0
    assert verdict == Verdict(0.0, "timeout after 0.5s", status="timeout")
    assert 0.5 <= elapsed < 3.0  # killed near the deadline, not after the verifier's 600 s


def test_stats_count_errors_and_timeouts_per_domain():
    with ScoringPool(2, timeout_s=1.0, score_fn=HOOK) as p:
        p.score_batch([make("math", "1"), make("math", "1"), make("code", "1"), make("code", "1")],
                      ["raise", "1", "hang", "exit"])
        p.score_batch([make("code", "1")], ["hang"])
        stats = p.stats()
    assert stats["verifier/errors/math"] == 1
    assert stats["verifier/timeouts/code"] == 2
    assert stats["verifier/errors/code"] == 1  # the crash
    assert stats["verifier/crashes/code"] == 1
    assert stats["verifier/scored/math"] == 2 and stats["verifier/scored/code"] == 3
    assert stats["verifier/worker_restarts"] == 3
    assert "verifier/timeouts/math" not in stats


def test_in_process_mode_scores_and_counts_without_workers():
    with ScoringPool(0, score_fn=HOOK) as p:
        verdicts = p.score_batch([make("stem", "B"), make("stem", "B")], ["B", "raise"])
        assert verdicts[0].score == 1.0 and verdicts[0].reason == f"pid {os.getpid()}"
        assert verdicts[1].status == "error"
        assert p.stats()["verifier/errors/stem"] == 1


def test_real_verifiers_through_workers():
    problems = [make("math", "\\frac{1}{2}"), make("stem", "C"), make("poetry", "x")]
    with ScoringPool(2) as p:
        verdicts = p.score_batch(problems, ["\\boxed{0.5}", "The answer is (C).", "ode"])
    assert [v.score for v in verdicts] == [1.0, 1.0, 0.0]
    assert verdicts[2].status == "error" and "no verifier for 'poetry'" in verdicts[2].reason


def test_a_worker_removes_the_sandboxs_etc_directory_when_it_stops():
    # Workers leave through os._exit, which skips atexit handlers: the directory must go with
    # multiprocessing's own exit hook, or every worker restart leaves one behind in /tmp.
    with ScoringPool(1, score_fn="test_pool:sandbox_etc_dir") as p:
        [verdict] = p.score_batch([make("code", "x")], ["x"])
        path = verdict.reason
        if not path:
            pytest.skip("no bwrap here: the sandbox makes no /etc directory")
        assert os.path.isdir(path)
    assert not os.path.exists(path)


@pytest.mark.parametrize("kwargs, message", [
    ({"num_workers": -1}, "num_workers=-1"),
    ({"timeout_s": 0}, "positive seconds"),
    ({"per_domain_timeout_s": {"code": -5}}, "positive seconds"),
])
def test_bad_settings_are_rejected(kwargs, message):
    from prorl.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        ScoringPool(**{"num_workers": 0, **kwargs})


def test_mismatched_lengths_raise():
    with ScoringPool(0) as p, pytest.raises(ValueError, match="2 problems but 1 responses"):
        p.score_batch([make("math", "1"), make("math", "2")], ["1"])


def test_workers_that_cannot_start_raise_instead_of_looping():
    with pytest.raises(RuntimeError, match="keep failing to start"):
        with ScoringPool(1, score_fn="no_such_module_here:score") as p:
            p.score_batch([make("math", "1")], ["1"])


def test_in_process_scoring_sets_no_wall_clock_limit(monkeypatch):
    # A pool of 0 workers promises no deadlines: math-verify's own alarm must not apply there either,
    # or a busy machine could turn a right answer into a timeout (score 0).
    import prorl.verifiers.math as math_verifier

    seen = []
    real = math_verifier._timeouts
    monkeypatch.setattr(math_verifier, "_timeouts", lambda: seen.append(real()) or seen[-1])
    problem = Problem(id="m", domain="math", prompt="?", answer="2")
    with ScoringPool(0) as pool:
        assert pool.score_batch([problem], ["\\boxed{2}"])[0].score == 1.0
    assert seen == [(None, None)]
    assert real() == (math_verifier.MATH_VERIFY_TIMEOUT_S,) * 2  # direct calls keep the limit
