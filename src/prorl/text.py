"""Reading answers out of model text: the answer region, the last ``\\boxed{}``, the last ``<tag>``.

The data adapters and the verifiers read answers with the same rules, so the rules live here, in a
leaf module: standard library only, nothing imported from prorl. Plain Python: no torch.

- :func:`answer_region`: the part of a response that is graded. :func:`prorl.verifiers.score`
  applies it to every domain before the domain's verifier sees the response.
- :func:`last_boxed`: the content of the last ``\\boxed{...}`` / ``\\fbox{...}`` (math, STEM, and the
  SCP-116K adapter reading a reference solution).
- :func:`last_tag`: the content of the last ``<tag>...</tag>`` (logic reads ``<answer>``).

>>> region = answer_region("<think>maybe \\\\boxed{1}</think> So \\\\boxed{2}.")
>>> region, last_boxed(region)
(' So \\\\boxed{2}.', '2')
>>> answer_region("<think>still thinking \\\\boxed{2}") is None
True
"""

from __future__ import annotations

import functools
import re

THINK_OPEN = "<think>"
"""Opens a reasoning block."""
THINK_CLOSE = "</think>"
"""Closes a reasoning block; only what follows the last one is the answer."""

_BOX_COMMANDS = ("\\boxed", "\\fbox")


def answer_region(response: str) -> str | None:
    """The graded part of ``response``; None when its reasoning never ends.

    - There is a ``</think>``: the text after the LAST one, unless a ``<think>`` opens after it.
    - A ``<think>`` opens after the last ``</think>``, or there is a ``<think>`` and no ``</think>``
      at all: None (unterminated: an unfinished reasoning block has no answer to grade).
    - No think tag at all: the whole response.

    A lone ``</think>`` (a chat template that opens the block in the prompt) counts as terminated.

    >>> answer_region("<think>a</think>b</think>c")
    'c'
    >>> answer_region("</think>after a template-opened think")
    'after a template-opened think'
    >>> answer_region("<think>a</think>b<think>c") is None, answer_region("<think>never closed") is None
    (True, True)
    >>> answer_region("no think block")
    'no think block'
    """
    close = response.rfind(THINK_CLOSE)
    if response.rfind(THINK_OPEN) > close:
        return None
    return response if close < 0 else response[close + len(THINK_CLOSE) :]


def last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` / ``\\fbox{...}`` in ``text``, braces matched; None if none.

    >>> last_boxed("\\\\boxed{1} then \\\\boxed{\\\\frac{a}{b}}")
    '\\\\frac{a}{b}'
    >>> last_boxed("\\\\boxed{unclosed") is None
    True
    """
    starts = [i for cmd in _BOX_COMMANDS for i in _find_all(text, cmd)]
    for start in sorted(starts, reverse=True):
        content = _braced_after(text, start)
        if content is not None:
            return content
    return None


def _find_all(text: str, needle: str) -> list[int]:
    out, i = [], text.find(needle)
    while i >= 0:
        out.append(i)
        i = text.find(needle, i + 1)
    return out


def _braced_after(text: str, start: int) -> str | None:
    """The balanced ``{...}`` group that opens right after the command at ``start`` (spaces allowed)."""
    i = start + 1
    while i < len(text) and text[i].isalpha():  # skip the command name
        i += 1
    while i < len(text) and text[i] == " ":
        i += 1
    if i >= len(text) or text[i] != "{":
        return None
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1:j]
    return None


@functools.lru_cache(maxsize=16)
def _tag_pattern(tag: str) -> re.Pattern:
    return re.compile(f"<{re.escape(tag)}>(.*?)</{re.escape(tag)}>", re.DOTALL)


def last_tag(text: str, tag: str) -> str | None:
    """The stripped text inside the last ``<tag>...</tag>`` of ``text``; None when there is none.

    Each element runs from an opening tag to the nearest closing one after it (no nesting).

    >>> last_tag("<answer>1</answer> no, <answer> 2 </answer>", "answer")
    '2'
    >>> last_tag("<answer>unclosed", "answer") is None
    True
    """
    found = _tag_pattern(tag).findall(text)
    return found[-1].strip() if found else None
