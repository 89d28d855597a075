"""Misbehaving scorers of one's own, for tests/test_custom_reward.py."""

import time


def hang(problem, response):
    time.sleep(3600)


def crash(problem, response):
    return 1 / 0
