"""The evidence guard: its tests against reference implementations, its calibration, and scenario 2 streamed."""

from __future__ import annotations

import dataclasses
import math
import random

import pytest

from kpiguard.tripwire import Aggregation, Guard, Policy, WindowStats, evaluate
from kpiguard.tripwire._guard import (
    _p_below_zero,
    _t_quantile,
    _t_to_z,
    _welch_df,
    lr_z,
    mean_value_evidence,
    success_rate_evidence,
    z_quantile,
)

scipy_stats = pytest.importorskip("scipy.stats")


def rate(s: int, n: int) -> WindowStats:
    """A success-rate window with s successes out of n."""
    return WindowStats(n, float(s), float(s))


def binomial_pmf(n: int, p: float) -> list[float]:
    """P(k successes of n) for k = 0..n."""
    return [math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(n + 1)]


# --- success rates -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("s_r", "n_r", "s_b", "n_b"),
    [(30, 50, 190, 200), (10, 50, 190, 200), (25, 50, 100, 200), (3, 50, 20, 200), (49, 50, 170, 200), (7, 12, 9, 30)],
)
def test_lr_z_at_ratio_one_is_the_g_test(s_r: int, n_r: int, s_b: int, n_b: int) -> None:
    """With no margin the statistic squared is the G-test (log-likelihood chi-square) of the 2x2 table."""
    table = [[s_r, n_r - s_r], [s_b, n_b - s_b]]
    g_stat = scipy_stats.chi2_contingency(table, correction=False, lambda_="log-likelihood").statistic
    z = lr_z(s_r, n_r, s_b, n_b, 1.0)
    assert z * z == pytest.approx(g_stat, rel=1e-9, abs=1e-12)
    assert math.copysign(1.0, z) == math.copysign(1.0, s_r / n_r - s_b / n_b) or z == 0.0


@pytest.mark.parametrize("true_rate", [0.1, 0.3, 0.5, 0.7, 0.9, 0.95])
def test_no_drop_p_value_keeps_its_level_on_stable_rates(true_rate: float) -> None:
    """Exactly over all count pairs: P(p_value <= 1e-4) on a stable rate stays within 2x of 1e-4."""
    alpha = 1e-4
    pmf_r, pmf_b = binomial_pmf(50, true_rate), binomial_pmf(200, true_rate)
    total = 0.0
    for s_r, w_r in enumerate(pmf_r):
        if w_r < 1e-15:
            continue
        for s_b, w_b in enumerate(pmf_b):
            if w_r * w_b < 1e-15:
                continue
            z = lr_z(s_r, 50, s_b, 200, 1.0)
            if 0.5 * math.erfc(-z / math.sqrt(2)) <= alpha:
                total += w_r * w_b
    assert total <= 2 * alpha


@pytest.mark.parametrize("s_r", [0, 1, 5, 20, 30, 38, 45, 49, 50])
@pytest.mark.parametrize("s_b", [1, 40, 100, 170, 190, 199, 200])
@pytest.mark.parametrize(("max_drop", "confidence"), [(0.2, 0.95), (0.15, 0.99), (0.3, 0.9)])
def test_drop_interval_inverts_the_confidence_test(s_r: int, s_b: int, max_drop: float, confidence: float) -> None:
    """drop_low is where the test's z reaches the quantile; drop_low >= max_drop iff confidence >= level."""
    evidence = success_rate_evidence(rate(s_r, 50), rate(s_b, 200), max_drop, confidence)
    low, high = evidence["drop_low"], evidence["drop_high"]
    assert low is not None and high is not None
    assert low <= high <= 1.0
    z = z_quantile(confidence)
    assert lr_z(s_r, 50, s_b, 200, 1.0 - low) == pytest.approx(-z, abs=1e-3)
    if high < 1.0:
        assert lr_z(s_r, 50, s_b, 200, 1.0 - high) == pytest.approx(z, abs=1e-3)
    assert (evidence["confidence"] >= confidence) == (low >= max_drop - 1e-9)


@pytest.mark.parametrize(
    ("recent", "baseline", "p_value", "confidence"),
    [
        (rate(0, 50), rate(0, 200), 1.0, 0.0),  # nothing to lose
        (rate(50, 50), rate(200, 200), 0.5, None),  # identical perfect windows: no evidence either way
        (rate(0, 50), rate(200, 200), None, 1.0),  # total collapse of a perfect rate
    ],
)
def test_degenerate_success_windows(
    recent: WindowStats, baseline: WindowStats, p_value: float | None, confidence: float | None
) -> None:
    """All-success or all-failure windows give finite, sensible evidence, never an error."""
    evidence = success_rate_evidence(recent, baseline, 0.2, 0.95)
    if p_value is not None:
        assert evidence["p_value"] == pytest.approx(p_value)
    if confidence is not None:
        assert evidence["confidence"] == pytest.approx(confidence)
    assert all(v is None or math.isfinite(v) for v in evidence.values())


# --- means ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_mean_p_value_matches_welch(seed: int) -> None:
    """The mean guard's p_value is Welch's one-sided t test (within the t approximation)."""
    rng = random.Random(seed)
    sd_r, sd_b = rng.uniform(50, 300), rng.uniform(50, 300)
    recent = [rng.gauss(400, sd_r) for _ in range(50)]
    baseline = [rng.gauss(500, sd_b) for _ in range(200)]
    evidence = mean_value_evidence(WindowStats.from_values(recent), WindowStats.from_values(baseline), 0.3, 0.95)
    reference = scipy_stats.ttest_ind(baseline, recent, equal_var=False, alternative="greater").pvalue
    assert evidence["p_value"] == pytest.approx(reference, rel=0.02, abs=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_mean_confidence_is_welch_with_the_margin(seed: int) -> None:
    """Confidence that the drop reaches X = the Welch t CDF of (1 - X) * baseline - current (positive baseline)."""
    rng = random.Random(100 + seed)
    recent = [rng.gauss(330, 150) for _ in range(50)]
    baseline = [rng.gauss(500, 150) for _ in range(200)]
    r, b = WindowStats.from_values(recent), WindowStats.from_values(baseline)
    evidence = mean_value_evidence(r, b, 0.3, 0.95)
    v_r, v_b = r.variance / r.n, 0.49 * b.variance / b.n
    t = (0.7 * (b.mean or 0.0) - (r.mean or 0.0)) / math.sqrt(v_r + v_b)
    reference = scipy_stats.t.cdf(t, _welch_df(v_r, r.n, v_b, b.n))
    assert evidence["confidence"] == pytest.approx(reference, abs=2e-3)


@pytest.mark.parametrize("seed", range(4))
def test_fieller_bounds_agree_with_the_confidence(seed: int) -> None:
    """With a baseline far from zero, drop_low >= X exactly when the confidence reaches the level."""
    rng = random.Random(200 + seed)
    for _ in range(50):
        recent = WindowStats.from_values([rng.gauss(rng.uniform(250, 450), 150) for _ in range(50)])
        baseline = WindowStats.from_values([rng.gauss(500, 150) for _ in range(200)])
        evidence = mean_value_evidence(recent, baseline, 0.3, 0.95)
        low = evidence["drop_low"]
        assert low is not None
        assert (evidence["confidence"] >= 0.95 - 1e-6) == (low >= 0.3 - 1e-3)


def test_one_constant_window_is_fine() -> None:
    """A zero-variance baseline against a noisy recent window uses the recent window's variance alone."""
    recent = WindowStats.from_values([-300.0 + (i % 7) * 10 for i in range(50)])
    baseline = WindowStats.from_values([500.0] * 200)
    evidence = mean_value_evidence(recent, baseline, 0.3, 0.95)
    assert evidence["p_value"] < 1e-30
    assert evidence["confidence"] == pytest.approx(1.0)
    assert evidence["drop_low"] is not None and 1.5 < evidence["drop_low"] < 1.6


def test_baseline_near_zero_gives_no_confidence() -> None:
    """A baseline mean indistinguishable from 0 has no scale: little confidence, an unbounded interval."""
    rng = random.Random(9)
    recent = WindowStats.from_values([rng.gauss(-50, 100) for _ in range(50)])
    baseline = WindowStats.from_values([rng.gauss(0.5, 100) for _ in range(200)])
    evidence = mean_value_evidence(recent, baseline, 0.3, 0.95)
    assert evidence["confidence"] < 0.95
    assert evidence["drop_low"] is None and evidence["drop_high"] is None


@pytest.mark.parametrize("df", [10, 30, 60, 250])
@pytest.mark.parametrize("tail", [0.05, 1e-3, 3e-6])
def test_t_approximation_against_scipy(df: int, tail: float) -> None:
    """The Peizer-Pratt t tail and quantile are within 10% (df >= 10) of the exact ones."""
    t = scipy_stats.t.isf(tail, df)
    approx_tail = 0.5 * math.erfc(_t_to_z(t, df) / math.sqrt(2))
    assert approx_tail == pytest.approx(tail, rel=0.10)
    assert _t_quantile(scipy_stats.norm.isf(tail), df) == pytest.approx(t, rel=0.02)


def test_p_below_zero_with_no_variance_is_certain() -> None:
    """Exact estimates: the probability is 0 or 1."""
    assert _p_below_zero(1.0, 0.0, math.inf) == 0.0
    assert _p_below_zero(0.0, 0.0, math.inf) == 1.0
    assert _p_below_zero(-1.0, 0.0, math.inf) == 1.0


# --- scenario 2 streamed ---------------------------------------------------------------------------


def stream_triggers(policy: Policy, levels: list[float], seed: int) -> list[int]:
    """Evaluate after every event of a Bernoulli stream (windows kept incrementally); indices that triggered."""
    rng = random.Random(seed)
    history: list[float] = []
    recent, baseline = WindowStats(), WindowStats()
    w, b = policy.window_events, policy.baseline_events
    fired = []
    for i, level in enumerate(levels):
        v = 1.0 if rng.random() < level else 0.0
        history.append(v)
        recent = recent + WindowStats.of(v)
        if len(history) > w:
            moved = WindowStats.of(history[-w - 1])
            recent, baseline = recent - moved, baseline + moved
        if len(history) > w + b:
            baseline = baseline - WindowStats.of(history[-w - b - 1])
        if evaluate(policy, recent, baseline).triggered:
            fired.append(i)
    return fired


def test_scenario_2_never_triggers_over_5000_events_with_the_guard() -> None:
    """85% for 250 events then 70% (threshold 25%), evaluated after each of 5,000 events: the guard never fires."""
    policy = Policy("BUYER_MATCH", "match_success", max_drop_fraction=0.25)
    levels = [0.85] * 250 + [0.70] * 4750
    assert stream_triggers(policy, levels, seed=20260113) == []
    # The same events do fire the plain rule: the guard is what holds them back.
    assert stream_triggers(dataclasses.replace(policy, guard=Guard.NONE), levels, seed=20260113)


def test_guard_still_catches_the_testing_flow_when_streamed() -> None:
    """95% then 20%, evaluated after every event: the guard fires within the first recent window."""
    policy = Policy("WHOLESALE", "contract_rate")
    fired = stream_triggers(policy, [0.95] * 250 + [0.20] * 200, seed=5)
    assert fired and 250 <= fired[0] < 300


def test_mean_guard_on_a_stream() -> None:
    """A mean policy with the guard: quiet on 5,000 stable noisy values, fires on the ROI flip."""
    policy = Policy("CAPITAL", "roi_event", max_drop_fraction=0.3, aggregation=Aggregation.MEAN_VALUE)
    rng = random.Random(11)
    values = [rng.gauss(500, 250) for _ in range(5000)]
    recent, baseline = WindowStats(), WindowStats()
    for i, v in enumerate(values):
        recent = recent + WindowStats.of(v)
        if i >= 50:
            moved = WindowStats.of(values[i - 50])
            recent, baseline = recent - moved, baseline + moved
        if i >= 250:
            baseline = baseline - WindowStats.of(values[i - 250])
        assert not evaluate(policy, recent, baseline).triggered
    flipped = WindowStats.from_values([rng.gauss(-300, 250) for _ in range(50)])
    assert evaluate(policy, flipped, baseline).triggered
