"""pass@k estimator: hand-computed values, edge cases and agreement with exact rational arithmetic."""

from fractions import Fraction
from math import comb

import pytest

from prorl.eval.passk import default_ks, parse_ks, pass_at_k, pass_at_k_curve

# (n, c, k, expected, how it was worked out by hand)
HAND_CASES = [
    (5, 2, 2, 0.7, "1 - C(3,2)/C(5,2) = 1 - 3/10"),
    (5, 1, 1, 0.2, "c/n = 1/5"),
    (4, 1, 2, 0.5, "1 - C(3,2)/C(4,2) = 1 - 3/6"),
    (10, 3, 3, 1 - 35 / 120, "1 - C(7,3)/C(10,3) = 1 - 35/120 = 0.708333..."),
    (6, 0, 3, 0.0, "no correct sample: 1 - C(6,3)/C(6,3) = 0"),
    (6, 6, 1, 1.0, "all correct"),
    (6, 4, 3, 1.0, "n - c = 2 < k = 3: every 3-draw holds a correct one"),
    (6, 3, 3, 1 - 1 / 20, "n - c = 3 = k: 1 - C(3,3)/C(6,3) = 1 - 1/20"),
    (8, 1, 8, 1.0, "k = n and c >= 1"),
    (8, 0, 8, 0.0, "k = n and c = 0"),
    (256, 1, 128, 0.5, "one correct of 256, half drawn: 1 - C(255,128)/C(256,128) = 1 - 128/256"),
    (1024, 2, 1, 2 / 1024, "c/n"),
]


@pytest.mark.parametrize("n,c,k,expected,why", HAND_CASES)
def test_hand_computed(n, c, k, expected, why):
    assert pass_at_k(n, c, k) == pytest.approx(expected, rel=1e-12, abs=1e-15), why


@pytest.mark.parametrize(
    "n,c,k,message",
    [
        (4, 1, 5, "k=5 > n=4"),
        (4, 1, 0, "k >= 1"),
        (4, 5, 1, "0 <= c <= n"),
        (4, -1, 1, "0 <= c <= n"),
        (4.0, 1, 1, "integer"),
        (True, 1, 1, "integer"),
    ],
)
def test_bad_arguments_raise(n, c, k, message):
    with pytest.raises(ValueError, match=message):
        pass_at_k(n, c, k)


def _exact(n: int, c: int, k: int) -> Fraction:
    return 1 - Fraction(comb(n - c, k), comb(n, k))


@pytest.mark.parametrize("n", [1, 2, 3, 16, 17, 128, 256, 500, 1024])
def test_matches_exact_fractions(n):
    # A grid over c and k (every c and k for small n, a stride for large n) compared with the exact
    # rational value at rtol 1e-9; float arithmetic on C(n, k) itself would overflow at n=1024.
    stride = max(1, n // 40)
    cs = sorted(c for c in set(range(0, n + 1, stride)) | {0, 1, 2, n - 1, n} if 0 <= c <= n)
    ks = sorted(k for k in set(range(1, n + 1, stride)) | {1, 2, n // 2, n} if 1 <= k <= n)
    for c in cs:
        for k in ks:
            expected = float(_exact(n, c, k))
            got = pass_at_k(n, c, k)
            assert got == pytest.approx(expected, rel=1e-9, abs=0.0), (n, c, k)


def test_small_values_keep_relative_precision():
    # pass@1 with one correct sample in 1024 is 1/1024; pass@2 is 1 - (1023/1024)(1022/1023) = 2/1024.
    assert pass_at_k(1024, 1, 2) == pytest.approx(2 / 1024, rel=1e-12)


def test_monotone_in_k_and_c():
    n = 64
    for c in range(n + 1):
        curve = [pass_at_k(n, c, k) for k in range(1, n + 1)]
        assert all(a <= b + 1e-15 for a, b in zip(curve, curve[1:]))
    for k in (1, 8, 64):
        by_c = [pass_at_k(n, c, k) for c in range(n + 1)]
        assert all(a <= b + 1e-15 for a, b in zip(by_c, by_c[1:]))


def test_curve_and_grids():
    assert pass_at_k_curve(4, 2, [1, 2, 4, 8]) == {1: 0.5, 2: pytest.approx(1 - 1 / 6), 4: 1.0}
    assert default_ks(1) == [1]
    assert default_ks(128) == [1, 2, 4, 8, 16, 32, 64, 128]
    assert default_ks(200) == [1, 2, 4, 8, 16, 32, 64, 128]
    assert parse_ks("1, 16,4", 16) == [1, 4, 16]
    with pytest.raises(ValueError, match="larger than n=8"):
        parse_ks("1,16", 8)
    with pytest.raises(ValueError, match="not an integer"):
        parse_ks("1,x", 8)
