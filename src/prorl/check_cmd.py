"""``prorl data check FILE...``: every row that training could not use, and why, before a run starts.

A row is bad when it does not load (:mod:`prorl.data.loaders` checks its shape) or when its domain's
verifier could not grade it (:func:`prorl.verifiers.gradeable.why_ungradeable`: a math answer that does
not parse, a STEM answer that is no option or number, malformed code tests, an unknown Reasoning Gym
task, an unknown instruction or bad kwargs). The listing and exit codes are :mod:`prorl.data.check`'s;
this module adds the verifiers' checks, which the plain data layer may not import.
"""

from __future__ import annotations

import argparse

from prorl.data.check import add_check_arguments

__all__ = ["add_check_arguments", "main_check"]


def main_check(args: argparse.Namespace) -> int:
    """``prorl data check``: shape and gradeability of every row; 0 if every file is clean, else 1."""
    from prorl.data.check import main_check as check
    from prorl.verifiers.gradeable import why_ungradeable

    return check(args, grade=why_ungradeable)
