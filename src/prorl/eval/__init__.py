"""Evaluation: the pass@k estimator, ``evaluate`` (used by ``prorl eval`` and by validation during
training) and the base/intermediate/final boundary analysis of ``prorl compare``.

Importing this package is cheap: ``evaluate`` and ``compare`` load torch and matplotlib inside
their functions.
"""

from prorl.eval.passk import default_ks, pass_at_k, pass_at_k_curve

__all__ = ["default_ks", "pass_at_k", "pass_at_k_curve"]
