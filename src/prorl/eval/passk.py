"""The unbiased pass@k estimator (Chen et al., 2021) and the k grids the evaluation uses.

With ``n`` samples of which ``c`` are correct, the probability that at least one of ``k`` samples
drawn without replacement is correct is

    pass@k = 1 - C(n - c, k) / C(n, k)

The binomials overflow floats long before n = 1024 (C(1024, 512) has ~307 digits), so the ratio is
computed as a product instead:

    C(n - c, k) / C(n, k) = prod_{i = n - c + 1}^{n} (1 - k / i)

and that product is taken as ``exp(sum log1p(-k / i))`` so that ``1 - product`` can be formed with
``expm1`` without cancellation when the product is close to 1 (small ``c``, small ``k``).

Plain Python (no torch, no numpy): the estimator is called per problem while aggregating results.
"""

from __future__ import annotations

import math


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from ``n`` samples with ``c`` correct.

    Returns 1.0 when ``n - c < k`` (every draw of k samples contains a correct one).
    Raises ``ValueError`` when ``k > n``, ``k < 1``, ``c < 0`` or ``c > n``.

    >>> pass_at_k(5, 2, 2)  # 1 - C(3,2)/C(5,2) = 1 - 3/10
    0.7
    >>> pass_at_k(4, 0, 2), pass_at_k(4, 3, 2)
    (0.0, 1.0)
    >>> pass_at_k(8, 2, 1)  # pass@1 is c/n
    0.25
    """
    for name, value in (("n", n), ("c", c), ("k", k)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"pass_at_k: {name}={value!r}, expected an integer")
    if k < 1:
        raise ValueError(f"pass_at_k: k={k}, expected k >= 1")
    if not 0 <= c <= n:
        raise ValueError(f"pass_at_k: c={c} with n={n}, expected 0 <= c <= n")
    if k > n:
        raise ValueError(f"pass_at_k: k={k} > n={n}; pass@k needs at least k samples per problem")
    if c == 0:
        return 0.0
    if n - c < k:
        return 1.0
    if k == 1:  # the product telescopes to (n - c) / n; c / n is exact where the sum of logs is not
        return c / n
    # log of prod_{i=n-c+1}^{n} (1 - k/i); every factor is in (0, 1) because i > n - c >= k.
    log_fail = math.fsum(math.log1p(-k / i) for i in range(n - c + 1, n + 1))
    return -math.expm1(log_fail)


def pass_at_k_curve(n: int, c: int, ks: list[int]) -> dict[int, float]:
    """``{k: pass_at_k(n, c, k)}`` for every ``k`` in ``ks`` that is at most ``n`` (others are left out).

    >>> pass_at_k_curve(4, 1, [1, 2, 4, 8])
    {1: 0.25, 2: 0.5, 4: 1.0}
    """
    return {k: pass_at_k(n, c, k) for k in ks if k <= n}


def default_ks(n: int) -> list[int]:
    """Powers of two up to ``n``: the k grid of the paper's pass@k curves.

    >>> default_ks(256)
    [1, 2, 4, 8, 16, 32, 64, 128, 256]
    >>> default_ks(10)
    [1, 2, 4, 8]
    """
    if n < 1:
        raise ValueError(f"default_ks: n={n}, expected n >= 1")
    return [2**e for e in range(n.bit_length()) if 2**e <= n]


def parse_ks(text: str, n: int) -> list[int]:
    """Parse ``"1,2,4"`` into sorted unique ks; ``""`` gives :func:`default_ks`. ``ValueError`` names a bad k.

    >>> parse_ks("4, 1,2,2", 8)
    [1, 2, 4]
    >>> parse_ks("", 5)
    [1, 2, 4]
    """
    if not text.strip():
        return default_ks(n)
    ks = set()
    for part in text.split(","):
        part = part.strip()
        try:
            k = int(part)
        except ValueError:
            raise ValueError(f"k value {part!r} is not an integer (expected e.g. 1,2,4,8)") from None
        if k < 1:
            raise ValueError(f"k value {k} must be >= 1")
        if k > n:
            raise ValueError(f"k value {k} is larger than n={n} samples per problem")
        ks.add(k)
    return sorted(ks)
