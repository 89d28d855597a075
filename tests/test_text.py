"""Tables for prorl.text: the answer region, the last \\boxed{}, the last <tag>."""

from __future__ import annotations

import pytest

from prorl.text import answer_region, last_boxed, last_tag


@pytest.mark.parametrize(
    "response,expected",
    [
        ("plain", "plain"),
        ("<think>a</think>b", "b"),
        ("<think>a</think>b</think>c", "c"),  # the LAST </think>
        ("</think>after a template-opened think", "after a template-opened think"),
        ("<think>a</think>b<think>c", None),  # reopened and never closed
        ("<think>never closed", None),
        ("", ""),
        ("<think>a</think>", ""),  # terminated, nothing after: an empty region, not None
    ],
)
def test_answer_region(response, expected):
    assert answer_region(response) == expected


@pytest.mark.parametrize("text, expected", [
    ("\\boxed{a}", "a"),
    ("\\boxed{a} \\boxed{b}", "b"),
    ("\\boxed{\\frac{1}{\\sqrt{2}}}", "\\frac{1}{\\sqrt{2}}"),
    ("\\fbox{a} \\boxed{b} \\fbox{c}", "c"),
    ("\\boxed{b} \\boxed{unclosed", "b"),
    ("no box", None),
    ("\\boxed", None),
])
def test_last_boxed(text, expected):
    assert last_boxed(text) == expected


@pytest.mark.parametrize("text, tag, expected", [
    ("<answer>1</answer>", "answer", "1"),
    ("<answer>1</answer> no, <answer> 2 </answer>", "answer", "2"),  # the last one, stripped
    ("<answer>a\nb</answer>", "answer", "a\nb"),  # spans lines
    ("<answer></answer>", "answer", ""),
    ("<answer>unclosed", "answer", None),
    ("<answer>1</answer>", "final", None),  # another tag
    ("<a.b>x</a.b><aXb>y</aXb>", "a.b", "x"),  # the tag is taken literally, not as a pattern
])
def test_last_tag(text, tag, expected):
    assert last_tag(text, tag) == expected
