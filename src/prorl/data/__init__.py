"""Problem data: the schema, loaders for files and source formats, and the mixture sampler.

Plain Python: nothing under ``prorl.data`` imports torch (``tests/test_data.py`` checks it).
"""

from prorl.data.adapters import ADAPTERS, validate_problem
from prorl.data.loaders import iter_problems, load_problems
from prorl.data.mixture import MixtureSampler
from prorl.data.schema import DOMAINS, Problem

__all__ = ["ADAPTERS", "DOMAINS", "MixtureSampler", "Problem", "iter_problems", "load_problems", "validate_problem"]
