"""Small-sample statistics for comparing training runs.

A finding in this project is usually a difference between two recipes measured over a few
seeds. With n paired differences d_i (same seed: same data order and masks), the mean d̄ and
the sample standard deviation s give the standard error s / sqrt(n), and under "no true
difference" the ratio t = d̄ / (s / sqrt(n)) follows Student's t with n - 1 degrees of freedom
(Student 1908). A difference is called real when |t| passes the two-sided 95 % **bar**; with
three seeds the bar is 4.30, not the familiar 1.96. `seeds_for` turns the same distribution
around: how many seeds would a true difference need to pass the bar most of the time.

Paired yes/no outcomes on the same items (a word filled in right or not) use McNemar's exact
test instead, which looks only at the items the two models disagree on.

Everything here is plain Python floats; no tensors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

_LARGE_DF = 2000  # past this many degrees of freedom the t distribution is the normal to 1e-3


def t_two_sided(x: float, df: int) -> float:
    """P(|T| < x) for Student's T with an integer number of degrees of freedom.

    Closed form for integer df (Abramowitz and Stegun 26.7.3-4): with theta = atan(x / sqrt(df)),
    a finite sum in cos(theta); the normal curve past `_LARGE_DF` degrees of freedom.
    """
    if df < 1 or int(df) != df:
        raise ValueError(f"df must be a positive integer, got {df}")
    x = abs(x)
    if df > _LARGE_DF:
        return math.erf(x / math.sqrt(2))
    theta = math.atan(x / math.sqrt(df))
    c2 = math.cos(theta) ** 2
    if df % 2:  # odd: 2/pi * (theta + sin cos (1 + 2/3 cos^2 + 2*4/(3*5) cos^4 + ...))
        term, total = 1.0, 1.0 if df > 1 else 0.0
        for k in range(2, df - 1, 2):
            term *= k / (k + 1) * c2
            total += term
        return 2 / math.pi * (theta + math.sin(theta) * math.cos(theta) * total)
    term, total = 1.0, 1.0  # even: sin * (1 + 1/2 cos^2 + 1*3/(2*4) cos^4 + ...)
    for k in range(1, df - 2, 2):
        term *= k / (k + 1) * c2
        total += term
    return math.sin(theta) * total


def t_bar(df: int, level: float = 0.95) -> float:
    """The x with P(|T| < x) = level: the two-sided bar for df degrees of freedom (bisection)."""
    if not 0 < level < 1:
        raise ValueError(f"level must lie strictly between 0 and 1, got {level}")
    lo, hi = 0.0, 1.0
    while t_two_sided(hi, df) < level:
        hi *= 2
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if t_two_sided(mid, df) < level else (lo, mid)
    return (lo + hi) / 2


@dataclass(frozen=True)
class Comparison:
    """One difference and its standard error, held to the 95 % bar for its degrees of freedom."""

    mean: float  # the difference, a - b
    se: float  # its standard error
    df: int  # degrees of freedom of the t test

    @property
    def t(self) -> float:
        return self.mean / self.se

    @cached_property  # a bisection; __str__ and interval read it several times
    def bar(self) -> float:
        return t_bar(self.df)

    @property
    def passes(self) -> bool:
        return abs(self.t) > self.bar

    @property
    def interval(self) -> tuple[float, float]:
        """The 95 % interval: the mean plus or minus the bar times the standard error."""
        return self.mean - self.bar * self.se, self.mean + self.bar * self.se

    def __str__(self) -> str:
        lo, hi = self.interval
        word = "passes" if self.passes else "within"
        return (
            f"{self.mean:+.3f} ± {self.se:.3f}, |t| {abs(self.t):.1f}, bar {self.bar:.2f}: "
            f"{word}; 95 % interval {lo:+.3f} to {hi:+.3f}"
        )


def paired(a: Sequence[float], b: Sequence[float]) -> Comparison:
    """a_i - b_i over runs paired by seed: n - 1 degrees of freedom."""
    if len(a) != len(b) or len(a) < 2:
        raise ValueError(f"need two equal lists of at least 2 runs, got {len(a)} and {len(b)}")
    d = [x - y for x, y in zip(a, b)]
    mean = sum(d) / len(d)
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (len(d) - 1))
    return Comparison(mean, sd / math.sqrt(len(d)), len(d) - 1)


def seeds_for(sd: float, effect: float, power: float = 0.8) -> int:
    """The fewest seeds at which a true paired difference `effect`, with per-seed spread `sd`,
    passes the 95 % bar in a share `power` of experiments: the smallest n with
    (t_0.975 + t_power) * sd / sqrt(n) <= |effect|, both quantiles at n - 1 degrees of freedom.
    """
    if sd <= 0 or effect == 0:
        raise ValueError(f"need sd > 0 and a non-zero effect, got sd={sd}, effect={effect}")
    n = 2
    while (t_bar(n - 1) + t_bar(n - 1, 2 * power - 1)) * sd / math.sqrt(n) > abs(effect):
        n += 1
    return n


def mcnemar(b: int, c: int) -> float:
    """McNemar's exact two-sided p-value: b items only the first model got right, c only the
    second. With no true difference each disagreement is a fair coin flip."""
    n = b + c
    if n == 0:
        return 1.0
    return min(1.0, 2 * sum(math.comb(n, k) for k in range(min(b, c) + 1)) / 2**n)
