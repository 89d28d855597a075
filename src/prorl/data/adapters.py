"""Row adapters: one function per source data set, ``row dict -> Problem``, plus per-domain validation.

Every adapter has the same signature, ``adapter(row, *, default_id) -> Problem``: ``default_id`` is
used when the row carries no identifier of its own (the loader passes ``"<file stem>-<line>"``). The
loader sets ``Problem.source`` afterwards and runs :func:`validate_problem` on the result, so an
adapter only has to map fields. A missing or malformed field raises :class:`FieldError` naming the
field; the loader adds the file and line.

A row that is well formed but cannot be used (no reference answer can be derived from it, an
``ability`` that no domain takes) raises :class:`SkippedRow` instead: the loader leaves it out and
counts it under its short reason (see :class:`prorl.data.loaders.LoadReport`).

Adapters are chosen by name from the :data:`ADAPTERS` dict literal, or detected from the keys and
contents of a file's first rows by :func:`detect_adapter` / :func:`detect_adapter_rows` (rules in
their docstrings and in ``docs/data.md``).

Limits, said plainly: the field names of the public sources below follow their published data cards
(SCP-116K, the Llama-Nemotron post-training instruction-following RL subset, verl / Eurus-2-RL-Data
Parquet); the tests build rows in exactly those shapes, but no download was checked on this machine.

Plain Python: this module never imports torch.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from prorl.data.reasoning_gym import LOGIC_INSTRUCTION
from prorl.data.schema import Problem, known_domains
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


class SkippedRow(Exception):
    """A well-formed row that cannot be used; the loader counts it under ``reason`` and goes on.

    ``reason`` is short and shared by every row skipped for the same cause (it is a counter key in
    the loader's summary, e.g. ``"no derivable answer"`` or ``"ability 'chat' not routed"``);
    ``detail`` says more about this row.

    >>> str(SkippedRow("ability 'chat' not routed", "no domain takes it"))
    "skipped (ability 'chat' not routed): no domain takes it"
    """

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"skipped ({reason})" + (f": {detail}" if detail else ""))
        self.reason = reason
        """The counter key, e.g. ``"no derivable answer"``."""
        self.detail = detail


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


def _last_user(value: Any, field: str) -> tuple[str, str | None]:
    """(last user message, system text or None) from a chat list; a plain string is the user message.

    Used for multi-turn inputs (Llama-Nemotron): the prompt is the turn the response answers.
    """
    if isinstance(value, str) and value.strip():
        return value, None
    _chat_text(value, field)  # the same checks and messages as for a single-turn prompt
    users = [m["content"] for m in value if m.get("role") == "user"]
    if not users:
        raise FieldError(field, "expected at least one message with role 'user'")
    system = "\n\n".join(m["content"] for m in value if m.get("role") == "system")
    return users[-1], system or None


def _nonempty(value: Any) -> str | None:
    """``value`` when it is a string with non-space characters, else None."""
    return value if isinstance(value, str) and value.strip() else None


# ---------------------------------------------------------------------- our own schema


def from_prorl(row: dict, *, default_id: str) -> Problem:
    """A row in our own schema (``Problem.to_dict()``); ``id`` falls back to ``default_id``.

    ``tests`` and ``metadata`` may be JSON strings (as some Parquet writers store nested values).
    Numeric answers are turned into strings. An existing ``source`` is kept as ``metadata["origin"]``
    because the loader overwrites ``source`` with ``file:line``. ``system`` (the problem's system
    message) is optional: absent or None gives None, as in files written before the field existed.

    >>> p = from_prorl({"id": "m1", "domain": "math", "prompt": "1+1=", "answer": 2}, default_id="x-1")
    >>> p.id, p.domain, p.answer
    ('m1', 'math', '2')
    """
    raw_id = row.get("id")
    problem_id = default_id if raw_id is None else _text(row, "id")
    domain = row.get("domain")
    if domain not in known_domains():
        raise FieldError("domain", f"expected one of {', '.join(known_domains())}, got {_short(domain)}")
    metadata = _json_field(row, "metadata")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise FieldError("metadata", f"expected an object, got {_short(metadata)}")
    if isinstance(row.get("source"), str) and row["source"] and "origin" not in metadata:
        metadata = {**metadata, "origin": row["source"]}
    return Problem(
        id=problem_id, domain=domain, prompt=_text(row, "prompt"), answer=_optional_text(row, "answer"),
        tests=_json_field(row, "tests"), metadata=metadata, system=_optional_text(row, "system"),
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


ABILITY_DOMAINS: dict[str, str] = {
    "math": "math", "maths": "math", "mathematics": "math",
    "code": "code", "coding": "code", "codegen": "code", "programming": "code",
    "stem": "stem", "science": "stem", "physics": "stem", "chemistry": "stem", "biology": "stem",
    "logic": "logic", "puzzle": "logic", "puzzles": "logic", "reasoning_gym": "logic",
    "instruction": "instruction", "instruction_following": "instruction", "ifeval": "instruction",
    "if": "instruction",
}
"""verl ``ability`` values (lower case, ``-`` and spaces read as ``_``) -> our domain; others are skipped."""


def _ability_domain(ability: Any) -> str:
    """Our domain for a verl ``ability``, or :class:`SkippedRow` counted under the ability's value."""
    key = ability.strip().lower().replace("-", "_").replace(" ", "_") if isinstance(ability, str) else None
    if key not in ABILITY_DOMAINS:
        raise SkippedRow(f"ability {ability!r} not routed",
                         f"no domain takes it; routed values: {', '.join(sorted(ABILITY_DOMAINS))}")
    return ABILITY_DOMAINS[key]


def _answers(value: Any, field: str) -> list[str]:
    """Acceptable answers from a ground truth given as one string / number or a list of them."""
    values = value if isinstance(value, list) else [value]
    answers = [str(v) for v in values
               if (isinstance(v, str) and v.strip()) or (isinstance(v, (int, float)) and not isinstance(v, bool))]
    if not answers or len(answers) != len(values):
        raise FieldError(field, f"expected a non-empty string or a list of them, got {_short(value)}")
    return answers


def _instruction_metadata(ids: Any, kwargs: Any) -> dict[str, Any]:
    """``{"instruction_ids", "kwargs"}`` as the instruction verifier reads them.

    ``kwargs`` may be None (no arguments for any instruction), a JSON string of the list, or a list
    holding None for instructions that take no arguments (Llama-Nemotron) or dicts whose None values
    stand for absent arguments (IFEval on the Hugging Face hub, columnar files): both become ``{}`` /
    the dict without its Nones. A wrong length or type is left for :func:`validate_problem` to name.
    """
    if isinstance(kwargs, str):
        try:
            kwargs = json.loads(kwargs)
        except json.JSONDecodeError as exc:
            raise FieldError("kwargs", f"expected a list or a JSON string of one, got invalid JSON ({exc.msg})")
    if kwargs is None and isinstance(ids, list):
        kwargs = [{} for _ in ids]
    if isinstance(kwargs, list):
        kwargs = [{} if kw is None else {k: v for k, v in kw.items() if v is not None} if isinstance(kw, dict) else kw
                  for kw in kwargs]
    return {"instruction_ids": ids, "kwargs": kwargs}


def from_verl(row: dict, *, default_id: str) -> Problem:
    r"""verl-format rows (Eurus-2-RL-Data among them): ``data_source``, ``prompt``, ``ability``, ``reward_model``, ``extra_info``.

    ``prompt`` is a chat list (a plain string is accepted): the user message(s) become the prompt
    and the system message(s) :attr:`Problem.system`, which reaches the chat template (see
    :func:`prorl.policy.encode_prompts`). ``ability`` picks the domain through :data:`ABILITY_DOMAINS`;
    a value not in it skips the row, counted as ``ability '<value>' not routed``. What
    ``reward_model.ground_truth`` holds, per domain:

    - math, stem: the answer, or a list of acceptable answers: all are kept in
      ``metadata["answers"]``, the first is ``answer``.
    - code: a JSON string (or the decoded object) ``{"inputs": [...], "outputs": [...], "fn_name"?: str}``.
    - instruction: a JSON string or object with ``instruction_id_list`` (or ``instruction_ids``) and
      ``kwargs``.
    - logic: a Reasoning Gym entry (JSON string or object with ``metadata.source_dataset``), which the
      logic verifier needs; a bare answer skips the row (``logic ground truth is not a Reasoning Gym entry``).

    The prompt is used as written (verl data sets carry their own answer-format instruction).
    ``metadata["data_source"]`` keeps ``data_source``; the id is ``<data_source>-<extra_info.index>``
    when the index is present. Unsure: whether every code row's tests are stdin/stdout strings;
    call-argument lists are passed on unchanged.

    >>> gt = json.dumps({"inputs": ["1 2\\n"], "outputs": ["3\\n"]})
    >>> row = {"data_source": "codecontests", "ability": "code",
    ...        "prompt": [{"role": "system", "content": "Think first."},
    ...                   {"role": "user", "content": "Read a and b, print a+b."}],
    ...        "reward_model": {"style": "rule", "ground_truth": gt},
    ...        "extra_info": {"split": "train", "index": 7}}
    >>> p = from_verl(row, default_id="eurus-1")
    >>> p.id, p.domain, p.prompt, p.tests["outputs"], p.system
    ('codecontests-7', 'code', 'Read a and b, print a+b.', ['3\\n'], 'Think first.')
    >>> p = from_verl({"data_source": "x", "ability": "Math", "prompt": [{"role": "user", "content": "1/2 as a decimal?"}],
    ...                "reward_model": {"style": "rule", "ground_truth": ["0.5", "\\frac{1}{2}"]}}, default_id="v-1")
    >>> p.domain, p.answer, p.metadata["answers"]
    ('math', '0.5', ['0.5', '\\frac{1}{2}'])
    """
    prompt, system = _chat_text(row.get("prompt"), "prompt")
    domain = _ability_domain(row.get("ability"))
    reward_model = row.get("reward_model")
    if not isinstance(reward_model, dict) or reward_model.get("ground_truth") is None:
        raise FieldError("reward_model", f"expected {{'ground_truth': ...}}, got {_short(reward_model)}")
    source = row.get("data_source")
    extra = row.get("extra_info") if isinstance(row.get("extra_info"), dict) else {}
    problem_id = f"{source or 'verl'}-{extra['index']}" if extra.get("index") is not None else default_id
    metadata: dict[str, Any] = {"data_source": source} if source else {}
    common = {"id": problem_id, "domain": domain, "prompt": prompt, "system": system}
    where = "reward_model.ground_truth"
    if domain in ("math", "stem"):
        answers = _answers(reward_model["ground_truth"], where)
        if len(answers) > 1:
            metadata["answers"] = answers
        return Problem(**common, answer=answers[0], metadata=metadata)
    try:
        truth = _json_field(reward_model, "ground_truth")
    except FieldError as exc:
        raise FieldError(where, str(exc).split(": ", 1)[1]) from None
    if domain == "code":
        if not isinstance(truth, dict):
            raise FieldError(where, f"expected a JSON object of inputs/outputs, got {_short(truth)}")
        return Problem(**common, tests=truth, metadata=metadata)
    if domain == "instruction":
        if not isinstance(truth, dict):
            raise FieldError(where, f"expected a JSON object with instruction_id_list and kwargs, got {_short(truth)}")
        ids = truth.get("instruction_id_list", truth.get("instruction_ids"))
        return Problem(**common, metadata={**metadata, **_instruction_metadata(ids, truth.get("kwargs"))})
    entry_meta = truth.get("metadata") if isinstance(truth, dict) else None
    if not isinstance(entry_meta, dict) or not isinstance(entry_meta.get("source_dataset"), str):
        raise SkippedRow("logic ground truth is not a Reasoning Gym entry",
                         "the logic verifier rebuilds a Reasoning Gym task's scorer from its entry")
    answer = truth.get("answer")
    return Problem(**common, answer=None if answer is None else str(answer),
                   metadata={**metadata, "task": entry_meta["source_dataset"], "entry": truth})


from_eurus = from_verl
"""Eurus-2-RL-Data is verl-format Parquet (``ability`` "math" or "code"); the name is kept for old recipes."""


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


def _boxed(value: Any) -> str | None:
    r"""The last ``\boxed{}`` answer of a solution text, stripped, read as the math and STEM verifiers read it."""
    boxed = last_boxed(value) if isinstance(value, str) else None
    return boxed.strip() or None if boxed else None


SCP_MODEL_SOLUTIONS = (("o1_solution", "is_o1_solution_same_with_matched_solution"),
                       ("qwq_solution", "is_qwq_solution_same_with_matched_solution"))
"""SCP-116K's model solutions and the flag that says whether each agrees with ``matched_solution``."""


def _scp_answer(row: dict) -> tuple[str, dict[str, Any]]:
    r"""(answer, metadata about where it came from) for an SCP-116K row without a short-answer field.

    ``matched_solution``'s last ``\boxed{}`` answer when it has one (the reference solution wins);
    otherwise the last ``\boxed{}`` answer of the first model solution whose agreement flag is
    ``True`` (o1, then QwQ). The metadata holds ``answer_from`` (that field) and, for the cross-check,
    ``agreeing_answers``: the boxed answer of each agreeing model solution that has one (they may be
    written differently from the reference, e.g. ``0.5`` and ``\frac{1}{2}``, so they are recorded,
    not compared). Nothing derivable: :class:`SkippedRow` ``"no derivable answer"``.
    """
    agreeing = [field for field, flag in SCP_MODEL_SOLUTIONS if row.get(flag) is True]
    model_answers = {field: boxed for field in agreeing if (boxed := _boxed(row.get(field)))}
    matched = _boxed(row.get("matched_solution"))
    if matched or model_answers:
        answer_from = "matched_solution" if matched else next(iter(model_answers))
        info: dict[str, Any] = {"answer_from": answer_from}
        if model_answers:
            info["agreeing_answers"] = model_answers
        return matched or model_answers[answer_from], info
    why = ("no \\boxed{} answer in matched_solution and "
           + (f"none in the agreeing {' / '.join(agreeing)}" if agreeing else "no model solution flagged as agreeing"))
    raise SkippedRow("no derivable answer", why)


def from_scp(row: dict, *, default_id: str) -> Problem:
    r"""SCP-116K (STEM): ``domain`` (e.g. ``"Physics"``), ``problem``, ``matched_solution``, model solutions.

    The published rows hold ``domain``, ``problem``, ``matched_solution`` (the solution found with
    the problem in its source text), ``o1_solution``, ``qwq_solution`` and the booleans
    ``is_o1_solution_same_with_matched_solution`` / ``is_qwq_solution_same_with_matched_solution``,
    but no short answer. The answer is the first of ``extracted_answer``, ``answer``,
    ``final_answer`` when a row has one (converted copies often do); else ``matched_solution``'s last
    ``\boxed{}`` answer; else the last ``\boxed{}`` answer of a model solution flagged as agreeing
    with it (o1 first). ``metadata["answer_from"]`` names the field it came from. A row with no
    derivable answer is skipped (counted as ``no derivable answer``): a binary checker needs a reference.

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
    >>> row = {"domain": "Physics", "problem": "g on Earth in m/s^2?", "matched_solution": "about 9.8",
    ...        "o1_solution": r"so \boxed{9.8}", "qwq_solution": r"\boxed{10}",
    ...        "is_o1_solution_same_with_matched_solution": True,
    ...        "is_qwq_solution_same_with_matched_solution": False}
    >>> p = from_scp(row, default_id="scp-2")
    >>> p.answer, p.metadata["answer_from"]
    ('9.8', 'o1_solution')
    """
    problem = _text(row, "problem")
    key = _first_present(row, ("extracted_answer", "answer", "final_answer"))
    if key is not None:
        answer, metadata = _text(row, key), {}
    else:
        answer, metadata = _scp_answer(row)
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
            raise FieldError(key or metadata["answer_from"],
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
    """Instruction following: IFEval's rows and the Llama-Nemotron post-training instruction-following RL subset.

    IFEval's names: ``prompt`` (a string or a chat list), ``instruction_id_list`` (e.g.
    ``["punctuation:no_comma"]``; ``instruction_ids`` is accepted as a variant) and ``kwargs`` (one
    dict per instruction, or a JSON string of the list). ``key`` or ``id`` gives the id.

    Llama-Nemotron's names: ``input``, a chat list of ``{role, content}`` messages (the prompt is the
    LAST user message: the turn the response answers), ``args`` = ``{"instruction_id_list": [...],
    "instruction_kwargs": [{...} or null, ...]}`` (null for instructions without arguments, a JSON
    string of the object is accepted too), ``system_prompt`` (e.g. ``"detailed thinking on"``) and
    ``category``, ``license``, ``reasoning``, ``used_in_training``, ``version``, kept in
    ``metadata`` when present (``reasoning`` says whether the system prompt turns thinking on).

    The system message (``system_prompt``, else the chat list's system messages) becomes
    :attr:`Problem.system`. In each kwargs dict None values are dropped (the Hugging Face copy of
    IFEval, and columnar files, fill every argument name with None); a None entry becomes ``{}``.

    >>> row = {"key": 1001, "prompt": "Describe rain without commas.",
    ...        "instruction_id_list": ["punctuation:no_comma", "length_constraints:number_words"],
    ...        "kwargs": [{}, {"relation": "at least", "num_words": 20, "num_paragraphs": None}]}
    >>> p = from_ifeval(row, default_id="if-1")
    >>> p.id, p.domain, p.metadata["kwargs"][1]
    ('1001', 'instruction', {'relation': 'at least', 'num_words': 20})
    >>> row = {"input": [{"role": "user", "content": "Describe rain without commas."}],
    ...        "args": {"instruction_id_list": ["punctuation:no_comma"], "instruction_kwargs": [None]},
    ...        "category": "instruction following", "license": "odc-by", "reasoning": "on",
    ...        "used_in_training": "yes", "version": "v1", "system_prompt": "detailed thinking on"}
    >>> p = from_ifeval(row, default_id="if-2")
    >>> p.prompt, p.system, p.metadata["instruction_ids"], p.metadata["kwargs"]
    ('Describe rain without commas.', 'detailed thinking on', ['punctuation:no_comma'], [{}])
    """
    if "args" in row and not {"instruction_id_list", "instruction_ids"} & set(row):
        args = _json_field(row, "args")
        if not isinstance(args, dict):
            raise FieldError("args", f"expected {{'instruction_id_list': [...], 'instruction_kwargs': [...]}}, "
                                     f"got {_short(args)}")
        ids, kwargs = args.get("instruction_id_list"), args.get("instruction_kwargs", args.get("kwargs"))
        if ids is None:
            raise FieldError("args.instruction_id_list", f"expected a list of instruction ids, got {_short(ids)}")
    else:
        ids, kwargs = row.get("instruction_id_list", row.get("instruction_ids")), row.get("kwargs")
    prompt_key = "prompt" if row.get("prompt") is not None else "input"
    prompt, system = _last_user(row.get(prompt_key), prompt_key)
    system = _nonempty(row.get("system_prompt")) or system
    metadata = _instruction_metadata(ids, kwargs)
    for name in ("category", "license", "reasoning", "used_in_training", "version"):
        if isinstance(row.get(name), (str, int, float, bool)):
            metadata[name] = row[name]
    key = _first_present(row, ("key", "id"))
    return Problem(id=_text(row, key) if key else default_id, domain="instruction", prompt=prompt,
                   metadata=metadata, system=system)


ADAPTERS: dict[str, Callable[..., Problem]] = {
    "prorl": from_prorl,
    "deepscaler": from_deepscaler,
    "verl": from_verl,
    "eurus": from_eurus,
    "scp": from_scp,
    "reasoning_gym": from_reasoning_gym,
    "ifeval": from_ifeval,
}
"""Adapter names accepted by ``load_problems(adapter=...)`` and ``data.adapter`` in a recipe.

``eurus`` is another name for ``verl`` (detection answers ``verl``).
"""

DETECT_ROWS = 20
"""How many of a file's first readable rows :func:`detect_adapter_rows` looks at."""


def matching_adapters(keys: set[str] | list[str]) -> list[str]:
    """Every adapter whose key rule matches a row with these top-level keys, in :data:`ADAPTERS` order.

    Rules (also in ``docs/data.md``):

    - ``prorl``: has ``prompt`` and ``domain`` or ``id`` (our schema), and none of ``reward_model``,
      ``instruction_id_list``, ``instruction_ids``.
    - ``verl``: has ``reward_model`` and ``prompt``.
    - ``scp``: has ``problem`` and one of ``matched_solution``, ``extracted_answer``, ``options``,
      ``choices``, ``domain``.
    - ``deepscaler``: has ``problem`` and ``answer`` and none of the SCP keys.
    - ``reasoning_gym``: has ``question`` and ``metadata``.
    - ``ifeval``: has ``instruction_id_list`` or ``instruction_ids``, or ``input`` and ``args`` (Llama-Nemotron).

    >>> matching_adapters({"input", "args", "system_prompt"}), matching_adapters({"text"})
    (['ifeval'], [])
    """
    keys = set(keys)
    scp_keys = {"matched_solution", "extracted_answer", "options", "choices", "domain"}
    rules = {
        "prorl": "prompt" in keys and bool(keys & {"domain", "id"})
        and not keys & {"reward_model", "instruction_id_list", "instruction_ids"},
        "deepscaler": {"problem", "answer"} <= keys and not keys & scp_keys,
        "verl": {"reward_model", "prompt"} <= keys,
        "scp": "problem" in keys and bool(keys & scp_keys),
        "reasoning_gym": {"question", "metadata"} <= keys,
        "ifeval": bool(keys & {"instruction_id_list", "instruction_ids"}) or {"input", "args"} <= keys,
    }
    return [name for name in ADAPTERS if rules.get(name)]


def detect_adapter(keys: set[str] | list[str]) -> str | None:
    """The adapter for a row with these top-level keys: the one rule of :func:`matching_adapters` that
    matches, or None when none or more than one does. Files are detected from several rows by
    :func:`detect_adapter_rows`.

    >>> detect_adapter({"problem", "answer", "solution"}), detect_adapter({"problem", "domain", "matched_solution"})
    ('deepscaler', 'scp')
    >>> detect_adapter({"id", "domain", "prompt", "answer"}), detect_adapter({"text"})
    ('prorl', None)
    """
    matched = matching_adapters(keys)
    return matched[0] if len(matched) == 1 else None


def accepts(name: str, row: dict) -> bool:
    """Whether adapter ``name`` reads ``row``: a valid problem, or a row it recognises and skips.

    A :class:`SkippedRow` counts as read: the row is in the adapter's format (an SCP-116K row without
    a derivable answer is still an SCP-116K row).
    """
    try:
        validate_problem(ADAPTERS[name](row, default_id="detect"))
    except SkippedRow:
        return True
    except (FieldError, TypeError, AttributeError, ValueError):  # a row of another shape may trip an adapter
        return False
    return True


def detect_adapter_rows(rows: list[dict]) -> str | None:
    """The adapter for a file from its first rows (up to :data:`DETECT_ROWS`), or None when none fits.

    Each row votes for the adapters whose key rule matches it (:func:`matching_adapters`) and that
    read it (:func:`accepts`); the adapter with most votes wins, so one malformed first row does not
    decide for the file. A tie goes to the adapter that is the only key match of more rows; a tie
    after that gives None (the caller asks for an explicit adapter).

    >>> good = {"problem": "1+1?", "answer": "2"}
    >>> detect_adapter_rows([{"problem": "1+1?"}, good, good])
    'deepscaler'
    >>> detect_adapter_rows([{"text": "hi"}]) is None
    True
    """
    votes: dict[str, int] = {}
    sole: dict[str, int] = {}
    for row in rows[:DETECT_ROWS]:
        names = matching_adapters(row)
        for name in names:
            if accepts(name, row):
                votes[name] = votes.get(name, 0) + 1
                if len(names) == 1:
                    sole[name] = sole.get(name, 0) + 1
    if not votes:
        return None
    ranked = sorted(votes, key=lambda n: (votes[n], sole.get(n, 0)), reverse=True)
    if len(ranked) > 1 and (votes[ranked[0]], sole.get(ranked[0], 0)) == (votes[ranked[1]], sole.get(ranked[1], 0)):
        return None
    return ranked[0]


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
    if problem.domain not in known_domains():
        raise FieldError("domain", f"expected one of {', '.join(known_domains())}, got {_short(problem.domain)}")
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
