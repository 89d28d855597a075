"""Verifiers: score(problem, response) -> Verdict, one module per domain, plus the sandbox for untrusted code.

Plain Python: nothing here imports torch.
"""
