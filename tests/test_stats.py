"""Behaviour of the paired bootstrap comparison and its verdicts (mtl.stats)."""
import json

import numpy as np
import pytest

from mtl.stats import PairedComparison, format_comparison, paired_bootstrap, verdict


def test_hand_computed_two_sequences():
    # d = [0.1, 0.3]: resampled means are 0.1, 0.2, 0.3 with prob. 1/4, 1/2, 1/4, so the 2.5% and
    # 97.5% quantiles are the extremes
    c = paired_bootstrap([0.6, 0.8], [0.5, 0.5])
    assert c.diff == pytest.approx(0.2)
    assert (c.ci_low, c.ci_high) == (pytest.approx(0.1), pytest.approx(0.3))
    assert (c.n, c.n_resamples, c.confidence, c.seed) == (2, 10_000, 0.95, 0)


def test_constant_difference_collapses_interval():
    a = np.linspace(0.2, 0.8, 30)
    c = paired_bootstrap(a, a - 0.04)
    assert c.diff == pytest.approx(0.04)
    assert c.ci_low == pytest.approx(0.04) and c.ci_high == pytest.approx(0.04)


def test_deterministic_per_seed_and_seed_matters():
    rng = np.random.default_rng(1)
    a, b = rng.uniform(size=50), rng.uniform(size=50)
    assert paired_bootstrap(a, b, seed=3) == paired_bootstrap(a, b, seed=3)
    c3, c4 = paired_bootstrap(a, b, seed=3), paired_bootstrap(a, b, seed=4)
    assert (c3.ci_low, c3.ci_high) != (c4.ci_low, c4.ci_high)
    assert c3.diff == c4.diff


def test_swapping_a_and_b_mirrors_the_result():
    rng = np.random.default_rng(2)
    a, b = rng.uniform(size=40), rng.uniform(size=40)
    ab, ba = paired_bootstrap(a, b), paired_bootstrap(b, a)
    assert ba.diff == pytest.approx(-ab.diff)
    assert ba.ci_low == pytest.approx(-ab.ci_high) and ba.ci_high == pytest.approx(-ab.ci_low)
    assert (ba.wins, ba.ties, ba.losses) == (ab.losses, ab.ties, ab.wins)


def test_interval_covers_known_mean_and_excludes_zero():
    rng = np.random.default_rng(7)
    b = rng.uniform(0.3, 0.7, size=200)
    a = b + rng.normal(0.05, 0.1, size=200)  # true mean difference 0.05, standard error ~0.007
    c = paired_bootstrap(a, b)
    assert c.ci_low < 0.05 < c.ci_high
    assert c.ci_low > 0
    assert c.ci_low < c.diff < c.ci_high
    assert 0.015 < c.ci_high - c.ci_low < 0.045  # about 2 * 1.96 * 0.1 / sqrt(200) = 0.028
    wide = paired_bootstrap(a, b, confidence=0.99)
    assert wide.ci_low < c.ci_low and wide.ci_high > c.ci_high


def test_win_tie_loss_counts():
    b = [0.5] * 6
    a = [0.6, 0.51, 0.503, 0.5, 0.497, 0.4]  # d = .1, .01, .003, 0, -.003, -.1
    c = paired_bootstrap(a, b)
    assert (c.wins, c.ties, c.losses) == (2, 3, 1)
    c = paired_bootstrap(a, b, tie_tol=0.0)
    assert (c.wins, c.ties, c.losses) == (3, 1, 2)
    c = paired_bootstrap([0.305, 0.2], [0.300, 0.2])  # |d| == tie_tol up to float rounding
    assert (c.wins, c.ties, c.losses) == (0, 2, 0)


def test_dict_input_is_matched_by_name():
    a = {"s1": 0.9, "s2": 0.5, "s3": 0.7}
    b = {"s3": 0.6, "s1": 0.8, "s2": 0.55}  # other order
    c = paired_bootstrap(a, b)
    ref = paired_bootstrap([0.9, 0.5, 0.7], [0.8, 0.55, 0.6])
    assert c.diff == pytest.approx(ref.diff)
    assert (c.wins, c.ties, c.losses) == (2, 0, 1)
    assert paired_bootstrap(dict(reversed(list(a.items()))), b) == c
    with pytest.raises(ValueError, match="s3"):
        paired_bootstrap(a, {"s1": 0.8, "s2": 0.55, "s4": 0.6})
    with pytest.raises(ValueError, match="both"):
        paired_bootstrap(a, [0.8, 0.55, 0.6])


@pytest.mark.parametrize("a, b, kwargs, message", [
    ([0.1, 0.2, 0.3], [0.1, 0.2], {}, "different lengths"),
    ([0.1], [0.2], {}, "at least 2"),
    ([], [], {}, "at least 2"),
    ([0.1, np.nan], [0.2, 0.3], {}, "NaN or infinite"),
    ([0.1, 0.2], [np.inf, 0.3], {}, "NaN or infinite"),
    ([[0.1, 0.2]], [[0.1, 0.2]], {}, "1-D"),
    ([0.1, 0.2], [0.2, 0.3], {"n_resamples": 999}, "n_resamples"),
    ([0.1, 0.2], [0.2, 0.3], {"confidence": 1.0}, "confidence"),
    ([0.1, 0.2], [0.2, 0.3], {"confidence": 0.0}, "confidence"),
    ([0.1, 0.2], [0.2, 0.3], {"tie_tol": -0.1}, "tie_tol"),
])
def test_bad_input_raises(a, b, kwargs, message):
    with pytest.raises(ValueError, match=message):
        paired_bootstrap(a, b, **kwargs)


@pytest.mark.parametrize("lo, hi, direction, expected", [
    (0.01, 0.05, +1, "matches"),
    (-0.05, -0.01, +1, "does NOT match"),
    (-0.01, 0.05, +1, "tie"),
    (-0.05, -0.01, -1, "matches"),
    (0.01, 0.05, -1, "does NOT match"),
    (-0.05, 0.01, -1, "tie"),
    (0.0, 0.05, +1, "tie"),   # an endpoint at 0 does not exclude 0
    (-0.05, 0.0, -1, "tie"),
    (0.0, 0.0, +1, "tie"),
])
def test_verdict_table(lo, hi, direction, expected):
    assert verdict(lo, hi, direction=direction) == expected


def test_verdict_accepts_comparison_and_rejects_bad_input():
    c = paired_bootstrap([0.6, 0.8, 0.7], [0.5, 0.5, 0.5])  # every d > 0
    assert verdict(c) == "matches" and verdict(c, direction=-1) == "does NOT match"
    for args, kwargs in [((0.1,), {}), ((0.1, 0.2), {"direction": 0}), ((0.2, 0.1), {}),
                         ((c, 0.1), {})]:
        with pytest.raises(ValueError):
            verdict(*args, **kwargs)


def test_format_and_as_dict():
    c = PairedComparison(diff=0.034, ci_low=0.012, ci_high=0.057, wins=80, ties=5, losses=35,
                         n=120, n_resamples=10_000, confidence=0.95, seed=0, tie_tol=0.005)
    assert format_comparison(c) == "+0.034 [+0.012, +0.057], 80/5/35 W/T/L, n=120"
    d = paired_bootstrap([0.6, 0.8], [0.5, 0.9]).as_dict()
    assert json.loads(json.dumps(d)) == d
    assert type(d["wins"]) is int and type(d["ci_low"]) is float
    assert set(d) >= {"diff", "ci_low", "ci_high", "wins", "ties", "losses", "n", "n_resamples",
                      "confidence", "seed"}


def test_compare_summaries_pairs_per_sequence_scores_by_name():
    from mtl.stats import compare_summaries, per_sequence

    a = {"per_sequence": {"s1": {"auc": 0.5}, "s2": {"auc": 0.7}}}
    b = {"per_sequence": {"s2": {"auc": 0.4}, "s1": {"auc": 0.4}}}
    assert per_sequence(a) == {"s1": 0.5, "s2": 0.7}
    c = compare_summaries(a, b)
    assert c.diff == pytest.approx(0.2) and c.n == 2 and (c.ci_low, c.ci_high) == pytest.approx((0.1, 0.3))
    with pytest.raises(ValueError):
        compare_summaries(a, {"per_sequence": {"s1": {"auc": 0.1}, "s3": {"auc": 0.2}}})
