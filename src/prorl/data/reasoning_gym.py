"""Reasoning Gym problems for the logic domain: generated per task, split and seed.

:func:`build_problems` turns task names (or ``{name, size, seed, config}`` items) into
:class:`~prorl.data.schema.Problem` rows of domain ``"logic"``; :mod:`prorl.verifiers.logic` scores
them. ``problem.metadata`` holds what scoring needs:

- ``task``: the Reasoning Gym dataset name (e.g. ``"basic_arithmetic"``);
- ``entry``: the generated entry (``question``, ``answer``, ``metadata``), after a JSON round trip, so
  a problem scores the same freshly built or read back from JSONL (tuples become lists);
- ``config`` (optional): the task settings it was built with; the scorer is rebuilt with them,
  because a few scorers read their dataset's settings (``puzzle24`` checks the number range).

Entries exported by Reasoning Gym itself load through :func:`prorl.data.adapters.from_reasoning_gym`
instead, with the same prompt (:data:`LOGIC_INSTRUCTION` after the question).

Reasoning Gym is imported on the first call of :func:`build_problems`, not with this module.
Plain Python: this module never imports torch.

>>> [p] = build_problems(["basic_arithmetic"], size=1, seed=0, split="train")
>>> p.id, p.domain, p.metadata["task"], p.prompt.endswith(LOGIC_INSTRUCTION)
('basic_arithmetic-train-0', 'logic', 'basic_arithmetic', True)
"""

from __future__ import annotations

import json
import random
from typing import Any

from prorl.data.schema import Problem
from prorl.errors import ConfigError

LOGIC_INSTRUCTION = "Give your final answer inside <answer></answer> tags."
"""Appended to Reasoning Gym questions: the logic verifier reads the text inside <answer></answer>."""

SPLITS = ("train", "validation", "test")
"""Split names :func:`build_problems` accepts; each derives its own generator seeds."""


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
