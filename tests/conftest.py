"""Fixtures shared by the trainer's tests."""

from pathlib import Path

import pytest
from tiny_run import make_warm_model


@pytest.fixture(scope="session")
def warm_model(tmp_path_factory) -> Path:
    """A tiny model warm-started on one-digit addition (built once per test session)."""
    return make_warm_model(tmp_path_factory.mktemp("model"))
