"""Logic verifier: Reasoning Gym tasks, scored by each task's own scorer on the last ``<answer>`` text.

Problems come from :func:`build_problems` (or from Reasoning Gym JSONL through
:func:`prorl.data.adapters.from_reasoning_gym`). ``problem.metadata`` holds what scoring needs:

- ``task``: the Reasoning Gym dataset name (e.g. ``"basic_arithmetic"``);
- ``entry``: the generated entry (``question``, ``answer``, ``metadata``), after a JSON round trip, so
  a problem scores the same freshly built or read back from JSONL (tuples become lists);
- ``config`` (optional): the task settings it was built with; the scorer is rebuilt with them,
  because a few scorers read their dataset's settings (``puzzle24`` checks the number range).

Scoring (:func:`score`): the text inside the LAST ``<answer>...</answer>`` of the response, stripped
(none: 0, ``"no <answer> tag"``), goes to the task's ``score_answer(answer, entry)``. The score is
continuous in [0, 1] as the task defines it (many tasks give 0.01 or 0.05 for a well-formed wrong
answer). ``binarize=True`` gives 1.0 only for a task score ``>= 1.0`` (exactly the tasks' "correct")
and 0.0 otherwise.

Two departures from calling the scorer directly:

- :data:`RISKY_TASKS` evaluate the model's text as Python (``eval``) or with
  ``sympy.parse_expr`` (which calls ``eval`` too and computes ``9**9**9**9`` for ever), or expand
  a repetition count from it. Their scorer runs in a separate process with a hard deadline
  (:data:`ISOLATED_TIMEOUT_S`): in :func:`prorl.verifiers.sandbox.run_python` with
  ``site_packages=True`` when the sandbox module is present, else a plain child process killed at
  the deadline, with RLIMIT_CPU / RLIMIT_AS and a parent-death signal (no file or network isolation). A scorer past its deadline gives
  ``Verdict(0, "scorer timeout after Xs", status="timeout")``. Cost: ~3 s per scoring on this
  machine (a fresh interpreter imports Reasoning Gym).
- ``game_of_life_halting``: its scorer returns ``bool(answer) == bool(entry["answer"])``; both are
  non-empty strings, so ANY non-empty answer scores 1.0. This adapter scores it against the ground
  truth instead: 1.0 when the answer equals ``entry["answer"]`` (``"True"`` / ``"False"``) ignoring
  case and surrounding spaces, else 0.0.
- ``arc_agi`` and ``rearc`` compare the parsed board with ``metadata["output"]`` as a tuple of
  tuples, which a JSON round trip turns into lists; :data:`ENTRY_FIXES` restores the tuples.

>>> from prorl.data.schema import Problem
>>> [p] = build_problems(["basic_arithmetic"], size=1, seed=0, split="train")
>>> p.domain, p.metadata["task"]
('logic', 'basic_arithmetic')
>>> score(p, f"<answer>{p.answer}</answer>")
Verdict(score=1.0, reason='correct', status='ok')
>>> score(p, "I think it is 3").reason
'no <answer> tag'
"""

from __future__ import annotations

import functools
import json
import random
import re
import subprocess
import sys
from typing import Any

from prorl.data.adapters import LOGIC_INSTRUCTION
from prorl.data.schema import Problem
from prorl.errors import ConfigError
from prorl.verifiers.verdict import Verdict

RISKY_TASKS = {
    "countdown": "sympy.parse_expr(answer): evaluates the text; 9**9**9**9 never returns",
    "puzzle24": "sympy.parse_expr(answer): evaluates the text; 9**9**9**9 never returns",
    "polynomial_multiplication": "sympy.parse_expr(answer)",
    "simple_integration": "sympy.parse_expr(answer), then sympy.simplify",
    "intermediate_integration": "sympy.parse_expr(answer), then sympy.simplify",
    "string_insertion": "eval(answer) when the answer is not the exact string",
    "spiral_matrix": "eval(answer) on some answers",
    "binary_matrix": "eval(answer) on some answers",
    "n_queens": "eval(answer) on some answers",
    "rubiks_cube": "expands move repetition counts: 'R999999999' builds a list of a billion moves",
}
"""Tasks whose scorer runs isolated with a deadline, and why (read from reasoning_gym 0.1.25's source)."""

ISOLATED_TIMEOUT_S = 15.0
"""Wall-clock seconds for one isolated scoring, interpreter start and Reasoning Gym import included (~3 s)."""

ISOLATED_MEMORY_MB = 2048
"""Memory for one isolated scoring."""

SPLITS = ("train", "validation", "test")
"""Split names :func:`build_problems` accepts; each derives its own generator seeds."""

_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def split_seed(seed: int, split: str) -> int:
    """The Reasoning Gym seed for ``seed`` in ``split``: different splits draw from different seeds.

    Derived by seeding ``random.Random`` with the string ``"prorl-logic:<split>:<seed>"`` (string
    seeding is stable across Python versions), so training seed s and validation seed s never share
    a generator seed, while ``seed`` keeps selecting reproducible sets. Limit: a task with few
    distinct questions can still repeat a question across splits.

    >>> split_seed(0, "train") != split_seed(0, "validation")
    True
    """
    if split not in SPLITS:
        raise ConfigError(f"logic split {split!r}: expected one of {', '.join(SPLITS)}")
    return random.Random(f"prorl-logic:{split}:{seed}").randrange(2**31)


def _task_spec(item: str | dict, size: int, seed: int, where: str) -> tuple[str, int, int, dict]:
    if isinstance(item, str):
        return item, size, seed, {}
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        raise ConfigError(f"{where}: expected a task name or {{name, size, seed, config}}, got {item!r}")
    unknown = set(item) - {"name", "size", "seed", "config"}
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}; expected name, size, seed, config")
    config = item.get("config") or {}
    if not isinstance(config, dict):
        raise ConfigError(f"{where}.config: expected a mapping of task settings, got {config!r}")
    for key in ("size", "seed"):
        if key in item and not isinstance(item[key], int):
            raise ConfigError(f"{where}.{key}: expected an integer, got {item[key]!r}")
    return item["name"], item.get("size", size), item.get("seed", seed), config


def _json_safe(value: Any) -> Any:
    """``value`` after a JSON round trip (tuples -> lists; numpy scalars and sets converted first)."""
    def default(obj: Any) -> Any:
        if hasattr(obj, "item"):  # numpy scalars
            return obj.item()
        if isinstance(obj, (set, frozenset)):
            return sorted(obj, key=repr)
        raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")

    return json.loads(json.dumps(value, default=default))


def build_problems(tasks: list[dict] | list[str], *, size: int, seed: int, split: str) -> list[Problem]:
    """Generate ``size`` problems per task (unless the task item sets its own ``size`` / ``seed``).

    Each item of ``tasks`` is a task name or ``{"name": ..., "size": ..., "seed": ..., "config": {...}}``;
    ``config`` goes to ``reasoning_gym.create_dataset`` as task settings. The generator seed is
    :func:`split_seed` of the item's seed and ``split``. Ids are ``<task>-<split>-<index>``.
    Raises :class:`prorl.errors.ConfigError` on an unknown task, bad settings or split.
    """
    import reasoning_gym
    from reasoning_gym.factory import DATASETS

    problems: list[Problem] = []
    for i, item in enumerate(tasks):
        where = f"logic tasks[{i}]"
        name, task_size, task_seed, config = _task_spec(item, size, seed, where)
        if name not in DATASETS:
            raise ConfigError(f"{where}: unknown Reasoning Gym task {name!r}")
        try:
            dataset = reasoning_gym.create_dataset(name, size=task_size, seed=split_seed(task_seed, split), **config)
        except (TypeError, ValueError, AssertionError) as exc:
            raise ConfigError(f"{where}: task {name!r} rejected its settings {config!r}: {exc}") from exc
        for index in range(task_size):
            entry = _json_safe(dataset[index])
            metadata: dict[str, Any] = {"task": name, "entry": entry}
            if config:
                metadata["config"] = _json_safe(config)
            problems.append(Problem(
                id=f"{name}-{split}-{index}", domain="logic",
                prompt=f"{entry['question']}\n{LOGIC_INSTRUCTION}",
                answer=None if entry.get("answer") is None else str(entry["answer"]),
                metadata=metadata, source=f"reasoning_gym:{name}:{split}",
            ))
    return problems


def extract_answer(response: str) -> str | None:
    """The stripped text inside the last ``<answer>...</answer>``; None when there is none.

    >>> extract_answer("<answer>1</answer> no, <answer> 2 </answer>")
    '2'
    """
    found = _ANSWER.findall(response)
    return found[-1].strip() if found else None


@functools.lru_cache(maxsize=256)
def _scorer(task: str, config_json: str):
    """The task's ``score_answer``, built once per process with the problem's task settings."""
    import reasoning_gym

    config = json.loads(config_json)
    if not config:
        return reasoning_gym.get_score_answer_fn(task)
    return reasoning_gym.create_dataset(task, size=1, seed=0, **config).score_answer


def _board_as_tuples(entry: dict) -> dict:
    """``entry`` with ``metadata["output"]`` as a tuple of tuples, the type the ARC scorers compare with."""
    output = entry["metadata"]["output"]
    return {**entry, "metadata": {**entry["metadata"], "output": tuple(tuple(row) for row in output)}}


ENTRY_FIXES = {
    "arc_agi": _board_as_tuples,
    "rearc": _board_as_tuples,
}
"""Tasks whose scorer compares with a tuple field that JSON turns into a list: restored before scoring
(found by the round-trip test over every task; without it the right answer scores 0.05)."""


def task_score(task: str, config: dict, answer: str, entry: dict) -> float:
    """The task's own score for ``answer`` (in this process; no isolation), with our fixes applied."""
    if task == "game_of_life_halting":
        return float(answer.strip().lower() == str(entry["answer"]).strip().lower())
    if task in ENTRY_FIXES:
        entry = ENTRY_FIXES[task](entry)
    return float(_scorer(task, json.dumps(config, sort_keys=True))(answer, entry))


# Self-contained: the sandbox mounts site-packages (Reasoning Gym) but not this source tree.
_ISOLATED_SOURCE = """
import json, sys
job = json.loads(sys.stdin.read())
import reasoning_gym
if job["config"]:
    scorer = reasoning_gym.create_dataset(job["task"], size=1, seed=0, **job["config"]).score_answer
else:
    scorer = reasoning_gym.get_score_answer_fn(job["task"])
value = float(scorer(job["answer"], job["entry"]))
sys.stdout.write("\\nPRORL_SCORE " + repr(value) + "\\n")
"""


def _isolated_score(task: str, config: dict, answer: str, entry: dict, timeout_s: float) -> float | None:
    """``task_score`` in a separate process; None when it passed ``timeout_s``."""
    job = json.dumps({"task": task, "config": config, "answer": answer, "entry": entry}).encode()
    try:
        from prorl.verifiers import sandbox
    except ImportError:
        sandbox = None
    if sandbox is not None:
        result = sandbox.run_python(_ISOLATED_SOURCE, stdin=job, timeout_s=timeout_s, memory_mb=ISOLATED_MEMORY_MB,
                                    site_packages=True, files=None)
        if result.timed_out:
            return None
        returncode, stdout, stderr = result.returncode, result.stdout, result.stderr
    else:
        try:
            proc = subprocess.run([sys.executable, "-c", _ISOLATED_SOURCE], input=job, capture_output=True,
                                  timeout=timeout_s, preexec_fn=functools.partial(_limit_child, timeout_s))
        except subprocess.TimeoutExpired:
            return None
        returncode, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
    marker = stdout.rfind(b"\nPRORL_SCORE ")
    if returncode != 0 or marker < 0:
        tail = stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"isolated {task} scorer failed (exit {returncode}): {tail[0][:200]}")
    return float(stdout[marker:].split()[1])


def _limit_child(timeout_s: float) -> None:
    """In the fallback child: die with the worker, and stop at a CPU-time limit even if orphaned."""
    import ctypes
    import math
    import resource
    import signal

    cpu = math.ceil(timeout_s) + 1  # backs up the wall-clock deadline if the worker is killed first
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_AS, (ISOLATED_MEMORY_MB << 20, ISOLATED_MEMORY_MB << 20))
    try:  # Linux: PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def score(problem: Problem, response: str, *, binarize: bool = False,
          isolated_timeout_s: float = ISOLATED_TIMEOUT_S) -> Verdict:
    """The task's score for the last ``<answer>`` of ``response``; binary with ``binarize`` (1.0 iff >= 1.0)."""
    task = problem.metadata.get("task")
    entry = problem.metadata.get("entry")
    if not isinstance(task, str) or not isinstance(entry, dict):
        raise ValueError(f"logic problem {problem.id!r}: metadata needs 'task' (a name) and 'entry' (an object)")
    config = problem.metadata.get("config") or {}
    answer = extract_answer(response)
    if answer is None:
        return Verdict(0.0, "no <answer> tag")
    if task in RISKY_TASKS:
        value = _isolated_score(task, config, answer, entry, isolated_timeout_s)
        if value is None:
            return Verdict(0.0, f"scorer timeout after {isolated_timeout_s:g}s", status="timeout")
    else:
        value = task_score(task, config, answer, entry)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{task} scorer returned {value!r}, outside [0, 1]")
    if binarize:
        value = 1.0 if value >= 1.0 else 0.0
    if value >= 1.0:
        return Verdict(1.0, "correct")
    shown = " ".join(answer.split())[:80]
    return Verdict(value, f"wrong: got {shown}" if value == 0.0 else f"partial {value:.3g}: got {shown}")
