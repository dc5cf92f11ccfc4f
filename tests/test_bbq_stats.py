"""BBQ statistics against values derived by hand (derivations in the comments)."""

from __future__ import annotations

import math

import pytest

from edgegate import stats


def test_wilson_8_of_10() -> None:
    # p = .8, z^2 = 3.841459, denom = 1 + z^2/10 = 1.3841459
    # center = (.8 + z^2/20) / denom = .9920730 / 1.3841459 = .716738
    # half = z * sqrt(.8*.2/10 + z^2/400) / denom = 1.959964 * .160011 / 1.3841459 = .226577
    lo, hi = stats.wilson(8, 10)
    assert lo == pytest.approx(0.490161, abs=1e-5)
    assert hi == pytest.approx(0.943315, abs=1e-5)


def test_wilson_edges() -> None:
    assert stats.wilson(0, 0) == (0.0, 1.0)
    lo, hi = stats.wilson(0, 10)
    # k = 0: lower is 0 and upper = z^2/(n + z^2) = 3.841459 / 13.841459 = .277535
    assert lo == 0.0
    assert hi == pytest.approx(0.277535, abs=1e-5)


def test_mcnemar_exact() -> None:
    # b=1, c=9: n=10, P[X<=1] = (1 + 10)/1024, two-sided = 22/1024
    assert stats.mcnemar_exact(1, 9) == pytest.approx(22 / 1024)
    assert stats.mcnemar_exact(9, 1) == pytest.approx(22 / 1024)
    # b=0, c=5: 2 * (1/32)
    assert stats.mcnemar_exact(0, 5) == pytest.approx(0.0625)
    # b=c=3: 2 * P[X<=3 | 6] = 2 * 42/64 > 1 -> capped at 1
    assert stats.mcnemar_exact(3, 3) == 1.0
    assert stats.mcnemar_exact(0, 0) == 1.0


def test_binomial_tails() -> None:
    # P[X>=3 | 5, .1] = 10*.001*.81 + 5*.0001*.9 + .00001 = .00856
    assert stats.binom_sf(3, 5, 0.1) == pytest.approx(0.00856, rel=1e-9)
    assert stats.binom_sf(0, 5, 0.1) == 1.0
    assert stats.binom_sf(6, 5, 0.1) == 0.0
    # P[X<=1 | 4, .5] = (1 + 4)/16
    assert stats.binom_cdf(1, 4, 0.5) == pytest.approx(5 / 16)
    # large n stays finite (log-space sums): symmetric, so P[X <= 5000 | 10000, .5] is just over .5
    assert 0.5 < stats.binom_cdf(5000, 10000, 0.5) < 0.51


def test_cohens_h() -> None:
    # 2 asin sqrt(.5) - 2 asin sqrt(.25) = pi/2 - pi/3 = pi/6
    assert stats.cohens_h(0.25, 0.5) == pytest.approx(math.pi / 6)
    assert stats.cohens_h(0.5, 0.25) == pytest.approx(-math.pi / 6)
    assert stats.cohens_h(0.0, 1.0) == pytest.approx(math.pi)


def test_holm() -> None:
    # sorted: .005*4=.02, .01*3=.03, .03*2=.06, .04*1=.04 -> monotone: .02, .03, .06, .06
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert stats.holm([]) == []


def test_newcombe_paired_phi_zero() -> None:
    # table n11=2, n10=2, n01=4, n00=4: phi numerator 2*4 - 2*4 = 0
    # p1 = 4/12, p2 = 6/12, d = 1/6
    # Wilson(6,12) = (.253782, .746218); Wilson(4,12) = (.138119, .609377)
    # lower = d - sqrt((.5-.253782)^2 + (.609377-.333333)^2) = .166667 - .369896 = -.203229
    # upper = d + sqrt((.746218-.5)^2 + (.333333-.138119)^2) = .166667 + .314216 = .480883
    lo, hi = stats.newcombe_paired(2, 2, 4, 4)
    assert lo == pytest.approx(-0.203229, abs=2e-5)
    assert hi == pytest.approx(0.480883, abs=2e-5)


def test_newcombe_paired_contains_estimate_and_correlation_narrows() -> None:
    lo, hi = stats.newcombe_paired(40, 2, 10, 48)
    d = (40 + 10) / 100 - (40 + 2) / 100
    assert lo < d < hi
    # positive correlation between the two measurements narrows the interval vs phi = 0
    lo0, hi0 = stats.newcombe_paired(21, 21, 25, 33)  # roughly same margins, weak correlation
    assert (hi - lo) < (hi0 - lo0)
    assert stats.newcombe_paired(0, 0, 0, 0) == (-1.0, 1.0)


def test_a_one_sided_test_still_reports_a_two_sided_interval() -> None:
    """A one-sided binomial test's own interval ends at 1.0 ("95% CI 0.42..1.000" in reports)."""
    from edgegate.bbq.paired import exact_binomial

    r = exact_binomial(45, 100, 1 / 3, alternative="greater")
    assert r.p_value < 0.02 and 0.3 < r.ci[0] < 0.45 < r.ci[1] < 0.6
