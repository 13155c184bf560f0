"""ddlm.stats: the t bar against closed forms and a simulation, seeds_for's promised power,
McNemar's exact test, and the errors a caller can cause."""

import math

import numpy as np
import pytest

from ddlm.stats import Comparison, mcnemar, paired, seeds_for, t_bar, t_two_sided


def test_bar_matches_closed_forms():
    # df 1 is the Cauchy distribution, P(|t| < x) = 2 atan(x) / pi; df 2 is x / sqrt(2 + x^2)
    assert t_bar(1) == pytest.approx(math.tan(math.pi * 0.475), abs=1e-9)
    assert t_bar(2) == pytest.approx(math.sqrt(2 * 0.95**2 / (1 - 0.95**2)), abs=1e-9)
    assert t_bar(2, 0.6) == pytest.approx(math.sqrt(2 * 0.6**2 / (1 - 0.6**2)), abs=1e-9)
    # published two-sided 95 % values, and the normal's 1.96 for many degrees of freedom
    table = (
        (2, 4.303),
        (3, 3.182),
        (4, 2.776),
        (5, 2.571),
        (10, 2.228),
        (30, 2.042),
        (10**6, 1.96),
    )
    for df, x in table:
        assert t_bar(df) == pytest.approx(x, abs=1e-3)


def test_cdf_agrees_with_numerical_integration():
    x = np.linspace(0, 8, 80_001)
    for df in (1, 2, 3, 6, 7, 40):
        pdf = np.exp(
            math.lgamma((df + 1) / 2)
            - math.lgamma(df / 2)
            - 0.5 * math.log(df * math.pi)
            - (df + 1) / 2 * np.log1p(x**2 / df)
        )
        area = 2 * np.sum((pdf[1:] + pdf[:-1]) / 2 * np.diff(x))
        assert t_two_sided(8.0, df) == pytest.approx(area, abs=1e-6)


def test_bar_holds_false_passes_to_five_percent():
    d = np.random.default_rng(0).standard_normal((100_000, 3))  # three seeds, no true effect
    t = d.mean(1) / (d.std(1, ddof=1) / math.sqrt(3))
    assert abs((np.abs(t) > t_bar(2)).mean() - 0.05) < 0.005
    assert (np.abs(t) > 2).mean() > 0.15  # "two standard errors" passes far more often


def test_seeds_for_gives_the_power_it_promises():
    sd, effect = 0.3, 0.2
    n = seeds_for(sd, effect)
    rng = np.random.default_rng(1)
    for seeds, lo, hi in ((n, 0.78, 0.9), (n - 1, 0.0, 0.8)):
        sim = rng.normal(effect, sd, (20_000, seeds))
        t = sim.mean(1) / (sim.std(1, ddof=1) / math.sqrt(seeds))
        assert lo < (np.abs(t) > t_bar(seeds - 1)).mean() < hi


def test_paired_and_its_interval():
    c = paired([1.0, 2.0, 3.0], [0.0, 0.0, 0.0])
    assert (c.mean, c.se, c.df) == (2.0, pytest.approx(1 / math.sqrt(3)), 2)
    assert not c.passes  # t = 3.46 < 4.30
    lo, hi = c.interval
    assert lo < 0 < hi and hi - c.mean == pytest.approx(c.mean - lo)
    assert Comparison(1.0, 0.1, 2).passes and "passes" in str(Comparison(1.0, 0.1, 2))


def test_mcnemar():
    assert mcnemar(10, 2) == pytest.approx(0.0386, abs=1e-4)
    assert mcnemar(3, 3) == 1.0 and mcnemar(0, 0) == 1.0
    assert mcnemar(5, 0) == pytest.approx(2 / 32)


def test_errors_name_the_input():
    with pytest.raises(ValueError, match="df"):
        t_bar(0)
    with pytest.raises(ValueError, match="level"):
        t_bar(3, 1.0)
    with pytest.raises(ValueError, match="at least 2"):
        paired([1.0], [2.0])
    with pytest.raises(ValueError, match="sd"):
        seeds_for(0.0, 0.1)
