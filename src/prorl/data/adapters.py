"""Row adapters: one function per source data set, ``row dict -> Problem``, plus per-domain validation.

Every adapter has the same signature, ``adapter(row, *, default_id) -> Problem``: ``default_id`` is
used when the row carries no identifier of its own (the loader passes ``"<file stem>-<line>"``). The
loader sets ``Problem.source`` afterwards and runs :func:`validate_problem` on the result, so an
adapter only has to map fields. A missing or malformed field raises :class:`FieldError` naming the
field; the loader adds the file and line.

Adapters are chosen by name from the :data:`ADAPTERS` dict literal, or detected from a row's keys by
:func:`detect_adapter` (rules in its docstring and in ``docs/data.md``).

Limits, said plainly: the field names of the public sources below are written from their published
data cards as remembered, not checked against a download (this machine has no access to them). Each
adapter accepts the common variants it names and says where it is unsure.

Plain Python: this module never imports torch.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from prorl.data.reasoning_gym import LOGIC_INSTRUCTION
from prorl.data.schema import DOMAINS, Problem
from prorl.text import last_boxed

MATH_INSTRUCTION = "Let's think step by step and output the final answer within \\boxed{}."
"""Appended to math prompts from sources that carry no instruction: the math verifier reads \\boxed{}."""
STEM_INSTRUCTION = "Put the final answer within \\boxed{}."
"""Appended to open-answer STEM prompts."""
CHOICE_INSTRUCTION = "Answer with the letter of the correct option within \\boxed{}."
"""Appended to multiple-choice STEM prompts, after the lettered options."""


class FieldError(ValueError):
    """A field of one row is missing or malformed; the loader prefixes the file and line.

    >>> str(FieldError("answer", "expected a non-empty string, got None"))
    "field 'answer': expected a non-empty string, got None"
    """

    def __init__(self, field: str, message: str):
        super().__init__(f"field {field!r}: {message}")
        self.field = field
        """Dotted name of the offending field, e.g. ``tests.inputs``."""


def _short(value: Any, limit: int = 60) -> str:
    """``repr`` cut to ``limit`` characters, for error messages about arbitrary values."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _text(row: dict, field: str, *, where: str | None = None) -> str:
    """A required non-empty string field (numbers are accepted and turned into strings)."""
    value = row.get(field)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise FieldError(where or field, f"expected a non-empty string, got {_short(value)}")
    return value


def _optional_text(row: dict, field: str) -> str | None:
    """An optional string field; numbers become strings, None and absence give None.

    Empty strings are passed on: whether a domain needs the field is :func:`validate_problem`'s call.
    """
    value = row.get(field)
    if value is None or isinstance(value, str):
        return value
    return _text(row, field)


def _first_present(row: dict, names: tuple[str, ...]) -> str | None:
    """The first of ``names`` that the row holds with a non-None value."""
    return next((n for n in names if row.get(n) is not None), None)


def _json_field(row: dict, field: str) -> Any:
    """A field that may hold a JSON string (common in Parquet exports) or the decoded value."""
    value = row.get(field)
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise FieldError(field, f"expected an object or a JSON string of one, got invalid JSON ({exc.msg})")
    return value


def _chat_text(value: Any, field: str) -> tuple[str, str | None]:
    """(user text, system text or None) from a prompt given as a string or a chat message list."""
    if isinstance(value, str) and value.strip():
        return value, None
    if not isinstance(value, list) or not value:
        raise FieldError(field, f"expected a string or a list of chat messages, got {_short(value)}")
    user, system = [], []
    for i, message in enumerate(value):
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            raise FieldError(f"{field}[{i}]", f"expected {{'role': ..., 'content': str}}, got {_short(message)}")
        (system if message.get("role") == "system" else user).append(message["content"])
    if not user:
        raise FieldError(field, "expected at least one non-system message")
    return "\n\n".join(user), ("\n\n".join(system) or None)


# ---------------------------------------------------------------------- our own schema


def from_prorl(row: dict, *, default_id: str) -> Problem:
    """A row in our own schema (``Problem.to_dict()``); ``id`` falls back to ``default_id``.

    ``tests`` and ``metadata`` may be JSON strings (as some Parquet writers store nested values).
    Numeric answers are turned into strings. An existing ``source`` is kept as ``metadata["origin"]``
    because the loader overwrites ``source`` with ``file:line``.

    >>> p = from_prorl({"id": "m1", "domain": "math", "prompt": "1+1=", "answer": 2}, default_id="x-1")
    >>> p.id, p.domain, p.answer
    ('m1', 'math', '2')
    """
    raw_id = row.get("id")
    problem_id = default_id if raw_id is None else _text(row, "id")
    domain = row.get("domain")
    if domain not in DOMAINS:
        raise FieldError("domain", f"expected one of {', '.join(DOMAINS)}, got {_short(domain)}")
    metadata = _json_field(row, "metadata")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise FieldError("metadata", f"expected an object, got {_short(metadata)}")
    if isinstance(row.get("source"), str) and row["source"] and "origin" not in metadata:
        metadata = {**metadata, "origin": row["source"]}
    return Problem(
        id=problem_id, domain=domain, prompt=_text(row, "prompt"), answer=_optional_text(row, "answer"),
        tests=_json_field(row, "tests"), metadata=metadata,
    )


# ---------------------------------------------------------------------- public sources


def from_deepscaler(row: dict, *, default_id: str) -> Problem:
    r"""DeepScaleR-Preview (math): ``problem``, ``answer``, ``solution``.

    The prompt is the problem followed by :data:`MATH_INSTRUCTION`; ``answer`` is kept as written
    (the math verifier wraps it in ``\boxed{}`` itself). ``solution`` is not used for training and is
    dropped. ``id`` / ``unique_id`` are used when present (the public set has neither, as far as known).

    >>> row = {"problem": "What is $1+2$?", "answer": "3", "solution": "$1+2=3$, so $\\boxed{3}$."}
    >>> p = from_deepscaler(row, default_id="deepscaler-1")
    >>> p.id, p.domain, p.answer, p.prompt.splitlines()[0]
    ('deepscaler-1', 'math', '3', 'What is $1+2$?')
    """
    key = _first_present(row, ("id", "unique_id"))
    return Problem(
        id=_text(row, key) if key else default_id, domain="math",
        prompt=f"{_text(row, 'problem')}\n{MATH_INSTRUCTION}", answer=_text(row, "answer"),
    )


def from_eurus(row: dict, *, default_id: str) -> Problem:
    """Eurus-2-RL-Data (PRIME): ``prompt`` chat list, ``reward_model.ground_truth``, ``ability``, ``data_source``.

    ``ability`` picks the domain: ``"code"`` rows take ``ground_truth`` as a JSON string of
    ``{"inputs": [...], "outputs": [...], "fn_name"?: str}`` (the decoded object is accepted too);
    ``"math"`` rows take it as the answer. The prompt is the user message(s); a system message is kept
    as ``metadata["system_prompt"]`` (the Eurus one asks for a long reasoning-step format that a
    different model may not want). ``extra_info.index`` gives the id when present. Unsure: whether
    every code row's JSON holds plain stdin/stdout strings; lists of call arguments are passed on.

    >>> gt = json.dumps({"inputs": ["1 2\\n"], "outputs": ["3\\n"]})
    >>> row = {"data_source": "codecontests", "ability": "code",
    ...        "prompt": [{"role": "system", "content": "Think first."},
    ...                   {"role": "user", "content": "Read a and b, print a+b."}],
    ...        "reward_model": {"style": "rule", "ground_truth": gt},
    ...        "extra_info": {"split": "train", "index": 7}}
    >>> p = from_eurus(row, default_id="eurus-1")
    >>> p.id, p.domain, p.prompt, p.tests["outputs"], p.metadata["system_prompt"]
    ('codecontests-7', 'code', 'Read a and b, print a+b.', ['3\\n'], 'Think first.')
    """
    prompt, system = _chat_text(row.get("prompt"), "prompt")
    reward_model = row.get("reward_model")
    if not isinstance(reward_model, dict) or reward_model.get("ground_truth") is None:
        raise FieldError("reward_model", f"expected {{'ground_truth': ...}}, got {_short(reward_model)}")
    ability = row.get("ability")
    source = row.get("data_source")
    extra = row.get("extra_info") if isinstance(row.get("extra_info"), dict) else {}
    problem_id = f"{source or 'eurus'}-{extra['index']}" if extra.get("index") is not None else default_id
    metadata: dict[str, Any] = {"data_source": source} if source else {}
    if system:
        metadata["system_prompt"] = system
    if ability == "code":
        tests = _json_field(reward_model, "ground_truth")
        if not isinstance(tests, dict):
            raise FieldError("reward_model.ground_truth", f"expected a JSON object of inputs/outputs, got {_short(tests)}")
        return Problem(id=problem_id, domain="code", prompt=prompt, tests=tests, metadata=metadata)
    if ability == "math":
        answer = _text(reward_model, "ground_truth", where="reward_model.ground_truth")
        return Problem(id=problem_id, domain="math", prompt=prompt, answer=answer, metadata=metadata)
    raise FieldError("ability", f"expected 'math' or 'code', got {_short(ability)}")


_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _choices(value: Any) -> list[str]:
    """Options as a list in letter order, from a list of strings or a ``{letter: text}`` dict."""
    if isinstance(value, dict):
        if not all(isinstance(k, str) and k.strip().upper() in _LETTERS for k in value):
            raise FieldError("options", f"expected letters A-Z as keys, got {_short(list(value))}")
        value = [value[k] for k in sorted(value, key=lambda k: k.strip().upper())]
    if not isinstance(value, list) or len(value) < 2 or not all(isinstance(v, str) for v in value):
        raise FieldError("options", f"expected at least two option strings, got {_short(value)}")
    if len(value) > len(_LETTERS):
        raise FieldError("options", f"expected at most {len(_LETTERS)} options, got {len(value)}")
    return value


def from_scp(row: dict, *, default_id: str) -> Problem:
    r"""SCP-116K (STEM): ``problem``, ``domain`` (e.g. ``"Physics"``), ``matched_solution``, answer fields.

    The public set, as far as known, holds ``domain``, ``problem``, ``matched_solution`` (the solution
    found in the source text) and model solutions (``o1_solution``, ``qwq_solution``) but no separate
    short answer. The answer is therefore taken from the first of ``extracted_answer``, ``answer``,
    ``final_answer``, else the last ``\boxed{}`` in ``matched_solution``; a row with none of these is
    an error (it cannot be scored by a binary checker).

    Multiple choice: when ``options`` or ``choices`` is present (a list, or a ``{letter: text}`` dict)
    the options are listed in the prompt as ``A. ...`` lines, stored as ``metadata["choices"]`` (list
    in letter order) and the answer must be a letter, or an option's exact text (turned into its letter).

    >>> row = {"domain": "Physics", "problem": "Which particle has no charge?",
    ...        "options": ["electron", "neutron", "proton"], "answer": "neutron"}
    >>> p = from_scp(row, default_id="scp-1")
    >>> p.domain, p.answer, p.metadata["choices"], p.metadata["field"]
    ('stem', 'B', ['electron', 'neutron', 'proton'], 'Physics')
    >>> print(p.prompt)
    Which particle has no charge?
    A. electron
    B. neutron
    C. proton
    Answer with the letter of the correct option within \boxed{}.
    >>> from_scp({"problem": "g on Earth in m/s^2?", "matched_solution": r"about \boxed{9.8}"},
    ...          default_id="scp-2").answer
    '9.8'
    """
    problem = _text(row, "problem")
    key = _first_present(row, ("extracted_answer", "answer", "final_answer"))
    if key is not None:
        answer = _text(row, key)
    else:
        solution = row.get("matched_solution")  # read as the math and STEM verifiers read \boxed{}
        boxed = last_boxed(solution) if isinstance(solution, str) else None
        answer = boxed.strip() if boxed else None
        if not answer:
            raise FieldError("extracted_answer", "expected an answer field (extracted_answer, answer or "
                             "final_answer) or a \\boxed{} answer in 'matched_solution'")
    metadata: dict[str, Any] = {}
    if isinstance(row.get("domain"), str):
        metadata["field"] = row["domain"]
    options_key = _first_present(row, ("options", "choices"))
    if options_key is None:
        prompt = f"{problem}\n{STEM_INSTRUCTION}"
    else:
        try:
            choices = _choices(row[options_key])
        except FieldError as exc:
            raise FieldError(options_key, str(exc).split(": ", 1)[1]) from None
        letters = _LETTERS[: len(choices)]
        if answer.strip().upper() in letters and len(answer.strip()) == 1:
            answer = answer.strip().upper()
        elif answer in choices:
            answer = letters[choices.index(answer)]
        else:
            raise FieldError(key or "extracted_answer",
                             f"expected a letter {letters[0]}-{letters[-1]} or an option's text, got {_short(answer)}")
        metadata["choices"] = choices
        listed = "\n".join(f"{letter}. {text}" for letter, text in zip(letters, choices))
        prompt = f"{problem}\n{listed}\n{CHOICE_INSTRUCTION}"
    key_id = _first_present(row, ("id", "unique_id"))
    return Problem(id=_text(row, key_id) if key_id else default_id, domain="stem", prompt=prompt,
                   answer=answer, metadata=metadata)


def from_reasoning_gym(row: dict, *, default_id: str) -> Problem:
    """A Reasoning Gym entry (logic): ``question``, ``answer``, ``metadata`` with ``source_dataset``.

    The whole entry is stored as ``metadata["entry"]`` and ``metadata["task"]`` is its
    ``source_dataset``: the logic verifier rebuilds the task's scorer from these. The prompt is the
    question followed by :data:`prorl.data.reasoning_gym.LOGIC_INSTRUCTION`, as for generated
    problems. ``answer`` may be None (some tasks accept many answers and score with the entry alone).
    The id is ``<task>-<source_index>`` when the index is present.

    >>> entry = {"question": "Calculate 5 - 3 - 6.", "answer": "-4",
    ...          "metadata": {"source_dataset": "basic_arithmetic", "source_index": 0, "expression": "5 - 3 - 6"}}
    >>> p = from_reasoning_gym(entry, default_id="rg-1")
    >>> p.id, p.domain, p.answer, p.metadata["task"], p.metadata["entry"] == entry
    ('basic_arithmetic-0', 'logic', '-4', 'basic_arithmetic', True)
    """
    meta = row.get("metadata")
    if not isinstance(meta, dict) or not isinstance(meta.get("source_dataset"), str):
        raise FieldError("metadata.source_dataset", f"expected a task name, got {_short(meta)}")
    task = meta["source_dataset"]
    index = meta.get("source_index")
    answer = row.get("answer")
    return Problem(
        id=f"{task}-{index}" if index is not None else default_id, domain="logic",
        prompt=f"{_text(row, 'question')}\n{LOGIC_INSTRUCTION}",
        answer=None if answer is None else str(answer),
        metadata={"task": task, "entry": row},
    )


def from_ifeval(row: dict, *, default_id: str) -> Problem:
    """IFEval-style instruction following (Llama-Nemotron IF data, IFEval itself): prompt plus constraints.

    Fields, with IFEval's names: ``prompt`` (a string, or a chat list; ``input`` is accepted as a
    variant), ``instruction_id_list`` (e.g. ``["punctuation:no_comma"]``; ``instruction_ids`` is accepted
    as a variant) and ``kwargs`` (one dict per instruction, or a JSON string of the list). None-valued keys in each kwargs dict are dropped: the Hugging Face copy of IFEval
    fills every possible argument with None. ``key`` or ``id`` gives the id. Unsure: the exact field
    names of the Nemotron instruction-following subset; rows that use other names need a conversion.

    >>> row = {"key": 1001, "prompt": "Describe rain without commas.",
    ...        "instruction_id_list": ["punctuation:no_comma", "length_constraints:number_words"],
    ...        "kwargs": [{}, {"relation": "at least", "num_words": 20, "num_paragraphs": None}]}
    >>> p = from_ifeval(row, default_id="if-1")
    >>> p.id, p.domain, p.metadata["kwargs"][1]
    ('1001', 'instruction', {'relation': 'at least', 'num_words': 20})
    """
    prompt_key = "prompt" if row.get("prompt") is not None else "input"
    prompt, _system = _chat_text(row.get(prompt_key), prompt_key)
    ids = row.get("instruction_id_list", row.get("instruction_ids"))
    kwargs = _json_field(row, "kwargs")
    if isinstance(kwargs, list):
        kwargs = [{k: v for k, v in kw.items() if v is not None} if isinstance(kw, dict) else kw for kw in kwargs]
    key = _first_present(row, ("key", "id"))
    return Problem(id=_text(row, key) if key else default_id, domain="instruction", prompt=prompt,
                   metadata={"instruction_ids": ids, "kwargs": kwargs})


ADAPTERS: dict[str, Callable[..., Problem]] = {
    "prorl": from_prorl,
    "deepscaler": from_deepscaler,
    "eurus": from_eurus,
    "scp": from_scp,
    "reasoning_gym": from_reasoning_gym,
    "ifeval": from_ifeval,
}
"""Adapter names accepted by ``load_problems(adapter=...)`` and ``data.adapter`` in a recipe."""


def detect_adapter(keys: set[str] | list[str]) -> str | None:
    """The adapter for a row with these top-level keys, or None when no rule or more than one matches.

    Rules (first row of a file decides for the whole file):

    - ``prorl``: has ``prompt`` and ``domain`` or ``id`` (our schema), and neither ``reward_model``
      nor ``instruction_id_list``.
    - ``eurus``: has ``reward_model`` and ``prompt``.
    - ``ifeval``: has ``instruction_id_list`` or ``instruction_ids``.
    - ``reasoning_gym``: has ``question`` and ``metadata``.
    - ``scp``: has ``problem`` and one of ``matched_solution``, ``extracted_answer``, ``options``,
      ``choices``, ``domain``.
    - ``deepscaler``: has ``problem`` and ``answer`` and none of the SCP keys.

    >>> detect_adapter({"problem", "answer", "solution"}), detect_adapter({"problem", "domain", "matched_solution"})
    ('deepscaler', 'scp')
    >>> detect_adapter({"id", "domain", "prompt", "answer"}), detect_adapter({"text"})
    ('prorl', None)
    """
    keys = set(keys)
    scp_keys = {"matched_solution", "extracted_answer", "options", "choices", "domain"}
    rules = {
        "prorl": "prompt" in keys and bool(keys & {"domain", "id"})
        and not keys & {"reward_model", "instruction_id_list", "instruction_ids"},
        "eurus": {"reward_model", "prompt"} <= keys,
        "ifeval": bool(keys & {"instruction_id_list", "instruction_ids"}),
        "reasoning_gym": {"question", "metadata"} <= keys,
        "scp": "problem" in keys and bool(keys & scp_keys),
        "deepscaler": {"problem", "answer"} <= keys and not keys & scp_keys,
    }
    matched = [name for name, ok in rules.items() if ok]
    return matched[0] if len(matched) == 1 else None


# ---------------------------------------------------------------------- validation


def _check_string_list(value: Any, field: str) -> None:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise FieldError(field, f"expected a non-empty list of strings, got {_short(value)}")


def validate_problem(problem: Problem) -> Problem:
    """``problem`` unchanged if it has what its domain's verifier reads, else :class:`FieldError`.

    - math, stem: a non-empty ``answer``.
    - code: ``tests`` = ``{"inputs": list, "outputs": list}`` of equal, non-zero length; ``fn_name``
      a string when present.
    - logic: ``metadata.task`` (string) and ``metadata.entry`` (object).
    - instruction: ``metadata.instruction_ids`` (non-empty list of strings) and ``metadata.kwargs``
      (a list of objects, one per instruction).

    >>> validate_problem(Problem(id="a", domain="math", prompt="1+1=", answer=""))
    Traceback (most recent call last):
    ...
    prorl.data.adapters.FieldError: field 'answer': required for math problems, expected a non-empty string, got ''
    """
    if problem.domain not in DOMAINS:
        raise FieldError("domain", f"expected one of {', '.join(DOMAINS)}, got {_short(problem.domain)}")
    if not isinstance(problem.prompt, str) or not problem.prompt.strip():
        raise FieldError("prompt", f"expected a non-empty string, got {_short(problem.prompt)}")
    meta = problem.metadata
    if problem.domain in ("math", "stem"):
        if not isinstance(problem.answer, str) or not problem.answer.strip():
            raise FieldError("answer", f"required for {problem.domain} problems, expected a non-empty string, "
                                       f"got {_short(problem.answer)}")
    elif problem.domain == "code":
        tests = problem.tests
        if not isinstance(tests, dict):
            raise FieldError("tests", f"required for code problems, expected {{'inputs': [...], 'outputs': [...]}}, "
                                      f"got {_short(tests)}")
        for part in ("inputs", "outputs"):
            if not isinstance(tests.get(part), list):
                raise FieldError(f"tests.{part}", f"expected a list, got {_short(tests.get(part))}")
        n_in, n_out = len(tests["inputs"]), len(tests["outputs"])
        if n_in != n_out:
            raise FieldError("tests", f"expected as many outputs as inputs, got {n_in} inputs and {n_out} outputs")
        if n_in == 0:
            raise FieldError("tests", "expected at least one test case, got none")
        if tests.get("fn_name") is not None and not isinstance(tests["fn_name"], str):
            raise FieldError("tests.fn_name", f"expected a string, got {_short(tests['fn_name'])}")
    elif problem.domain == "logic":
        if not isinstance(meta.get("task"), str) or not meta["task"]:
            raise FieldError("metadata.task", f"required for logic problems, expected a task name, "
                                              f"got {_short(meta.get('task'))}")
        if not isinstance(meta.get("entry"), dict):
            raise FieldError("metadata.entry", f"required for logic problems, expected the Reasoning Gym entry "
                                               f"object, got {_short(meta.get('entry'))}")
    elif problem.domain == "instruction":
        _check_string_list(meta.get("instruction_ids"), "metadata.instruction_ids")
        kwargs = meta.get("kwargs")
        if not isinstance(kwargs, list) or not all(isinstance(kw, dict) for kw in kwargs):
            raise FieldError("metadata.kwargs", f"expected a list of objects, got {_short(kwargs)}")
        if len(kwargs) != len(meta["instruction_ids"]):
            raise FieldError("metadata.kwargs", f"expected one object per instruction "
                                                f"({len(meta['instruction_ids'])}), got {len(kwargs)}")
    return problem
