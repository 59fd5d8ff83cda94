"""deeprob_cli/stats.py: Student-t against printed tables and closed forms, intervals, the power-based detectable
effect against simulation and a classic sample-size figure, and every branch of the verdict."""
import math

import pytest
import torch

from deeprob_cli import stats

# Student's t critical values as printed in textbook tables (three decimals), df = 1 .. 30
T_TABLE = {
    0.95: [6.314, 2.920, 2.353, 2.132, 2.015, 1.943, 1.895, 1.860, 1.833, 1.812, 1.796, 1.782, 1.771, 1.761,
           1.753, 1.746, 1.740, 1.734, 1.729, 1.725, 1.721, 1.717, 1.714, 1.711, 1.708, 1.706, 1.703, 1.701,
           1.699, 1.697],
    0.975: [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
            2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
            2.045, 2.042],
    0.995: [63.657, 9.925, 5.841, 4.604, 4.032, 3.707, 3.499, 3.355, 3.250, 3.169, 3.106, 3.055, 3.012, 2.977,
            2.947, 2.921, 2.898, 2.878, 2.861, 2.845, 2.831, 2.819, 2.807, 2.797, 2.787, 2.779, 2.771, 2.763,
            2.756, 2.750],
}


@pytest.mark.parametrize("p", sorted(T_TABLE))
def test_t_quantile_matches_the_printed_table_for_df_1_to_30(p):
    for df, expected in enumerate(T_TABLE[p], 1):
        assert stats.t_quantile(p, df) == pytest.approx(expected, abs=1e-3), df
        assert stats.t_quantile(1 - p, df) == pytest.approx(-expected, abs=1e-3), df  # symmetry


@pytest.mark.parametrize("p", [0.55, 0.7, 0.9, 0.99, 0.9999, 0.2])
def test_t_quantile_matches_the_closed_forms_for_df_1_and_2(p):
    assert stats.t_quantile(p, 1) == pytest.approx(math.tan(math.pi * (p - 0.5)), rel=1e-9)  # Cauchy
    assert stats.t_quantile(p, 2) == pytest.approx((2 * p - 1) / math.sqrt(2 * p * (1 - p)), rel=1e-9)


def test_t_cdf_inverts_the_quantile_and_tends_to_the_normal():
    for df in (1, 2.5, 7, 30):
        for p in (0.6, 0.975, 0.999):
            assert stats.t_cdf(stats.t_quantile(p, df), df) == pytest.approx(p, abs=1e-12)
    assert stats.t_quantile(0.975, 1e7) == pytest.approx(1.959964, abs=1e-5)
    assert stats.t_cdf(0.0, 3) == 0.5 and stats.t_quantile(0.5, 3) == 0.0


def test_betainc_against_closed_forms():
    for x in (1e-6, 0.1, 0.5, 0.93):
        assert stats.betainc(1, 1, x) == pytest.approx(x, rel=1e-12)  # uniform
        assert stats.betainc(2, 1, x) == pytest.approx(x * x, rel=1e-12)
        assert stats.betainc(0.5, 0.5, x) == pytest.approx(2 / math.pi * math.asin(math.sqrt(x)), rel=1e-12)
    with pytest.raises(ValueError, match="0 ≤ x ≤ 1"):
        stats.betainc(1, 1, 1.5)


def test_one_sample_and_paired_by_hand():
    # differences 1, 2, 3: mean 2, sd 1, se 1/√3, interval 2 ± 4.3027/√3
    e = stats.paired([11, 12, 13], [10, 10, 10])
    assert (e.n, e.mean, e.sd, e.df, e.design) == (3, 2.0, 1.0, 2, "paired")
    assert e.half_width == pytest.approx(4.302653 / math.sqrt(3), abs=1e-6)
    assert e.ci95 == pytest.approx((2 - 2.484138, 2 + 2.484138), abs=1e-6)
    assert stats.one_sample([5.0]).ci95 == (-math.inf, math.inf)  # one seed: no interval
    assert stats.one_sample([5.0]).as_dict()["ci95"] == [None, None]
    with pytest.raises(ValueError, match="3 and 2 values"):
        stats.paired([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="all finite"):
        stats.one_sample([1.0, math.nan])


def test_pairing_removes_the_shared_seed_effect():
    # each seed moves both arms by the same amount: unpaired, that spread hides the +0.01; paired, it is exact
    seed_effect = [0.00, 0.05, -0.04, 0.02]
    b = [0.70 + s for s in seed_effect]
    a = [0.71 + s + d for s, d in zip(seed_effect, [0.001, -0.001, 0.0005, -0.0005])]
    assert stats.verdict(stats.paired(a, b), direction=1) == "holds"
    assert stats.verdict(stats.unpaired(a, b), direction=1) == "inconclusive"


def test_welch_interval_by_hand():
    a, b = [1.0, 2.0, 3.0], [0.0, 0.0, 3.0, 5.0]  # variances 1 and 6
    e = stats.unpaired(a, b)
    va, vb = 1 / 3, 6 / 4
    df = (va + vb) ** 2 / (va ** 2 / 2 + vb ** 2 / 3)
    assert e.mean == 0.0 and e.se == pytest.approx(math.sqrt(va + vb)) and e.df == pytest.approx(df)
    assert e.half_width == pytest.approx(stats.t_quantile(0.975, df) * math.sqrt(va + vb))


def test_detectable_effect_is_the_classic_sample_size_figure():
    # a paired/one-sample t-test needs n = 10 to detect d = 1 with power 0.8 at α = 0.05 (two-sided): the
    # detectable effect at sd 1 is just below 1 for n = 10 and above 1 for n = 9
    assert stats.one_sample([0, 1] * 5).detectable / stats.one_sample([0, 1] * 5).sd < 1
    assert stats.detectable_effect(1 / math.sqrt(10), 9) == pytest.approx(0.996, abs=2e-3)
    assert stats.detectable_effect(1 / math.sqrt(9), 8) > 1
    # for many seeds: (z_0.975 + z_0.8)·se
    assert stats.detectable_effect(1.0, 10_000) == pytest.approx(1.959964 + 0.841621, abs=2e-3)
    assert stats.detectable_effect(1.0, 0) == math.inf


@pytest.mark.parametrize("n", [2, 3, 5])
def test_detectable_effect_is_found_four_times_in_five_by_simulation(n):
    """Simulate many n-seed designs whose true effect is the detectable effect: ≈ 80 % of their intervals
    exclude 0 on the positive side."""
    sd, trials = 1.0, 20_000
    effect = stats.detectable_effect(sd / math.sqrt(n), n - 1)
    x = effect + sd * torch.randn(trials, n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    lower = x.mean(1) - stats.t_quantile(0.975, n - 1) * x.std(1) / math.sqrt(n)
    assert (lower > 0).double().mean().item() == pytest.approx(0.8, abs=0.012)
    assert stats.power(effect / (sd / math.sqrt(n)), n - 1) == pytest.approx(0.8, abs=1e-5)


def _estimate(mean, half_width, n=3):
    """A paired estimate with the given mean and 95 % half-width (n seeds)."""
    se = half_width / stats.t_quantile(0.975, n - 1)
    return stats.Estimate(n, mean, se * math.sqrt(n), se, n - 1, "paired")


# 3 seeds: detectable = 5.6535 se = 5.6535/4.3027 ≈ 1.314 half-widths
@pytest.mark.parametrize("mean, half, literature, direction, expected", [
    (0.05, 0.02, 0.04, None, "holds"),              # interval [0.03, 0.07] above 0
    (0.05, 0.02, None, 1, "holds"),                 # no literature figure needed for "holds"
    (-0.05, 0.02, -0.04, None, "holds"),            # expected negative (e.g. an error rate falls)
    (0.01, 0.005, 0.04, None, "holds"),             # smaller than the literature's, but clearly positive
    (0.0, 0.01, 0.04, None, "does_not_hold"),       # detects ≥ 0.013, interval [-0.01, 0.01] excludes 0.04
    (-0.05, 0.01, 0.04, None, "does_not_hold"),     # clearly opposite
])
def test_verdict_branches(mean, half, literature, direction, expected):
    assert stats.verdict(_estimate(mean, half), literature, direction) == expected


@pytest.mark.parametrize("mean, half, literature, direction, why", [
    (0.0, 0.05, 0.04, None, "detects only"),        # detects ≈ 0.066 > 0.04: cannot refute
    (-0.05, 0.04, 0.04, None, "detects only"),      # even "opposite" is not a refutation when underpowered
    (0.02, 0.025, 0.04, None, "includes 0 and"),    # powered (≈0.033 ≤ 0.04) but [−0.005, 0.045] holds 0.04
    (0.0, 0.01, None, 1, "nothing to refute"),      # no literature figure: never does_not_hold
    (-0.05, 0.01, None, 1, "nothing to refute"),    # ... even when clearly opposite
])
def test_verdict_must_be_inconclusive(mean, half, literature, direction, why):
    decision, reason = stats.decide(_estimate(mean, half), literature, direction)
    assert decision == "inconclusive" and why in reason, reason


def test_verdict_needs_two_seeds_and_a_direction():
    one = stats.paired([0.9], [0.1])  # a huge difference from one seed is still no evidence
    assert stats.decide(one, 0.05) == ("inconclusive", "no interval from n = 1 (needs ≥ 2 per arm)")
    with pytest.raises(ValueError, match="direction"):
        stats.verdict(one)
    with pytest.raises(ValueError, match="does not point"):
        stats.verdict(one, literature=0.05, direction=-1)


def test_verdict_boundaries_power_and_upper_end():
    e = _estimate(0.01, 0.02)  # interval [−0.01, 0.03]; 3 seeds detect 5.6535 se = 1.314 half-widths
    assert e.detectable == pytest.approx(0.02 * 5.65349 / 4.302653, rel=1e-4)
    assert e.detectable < 0.03
    assert stats.verdict(e, literature=0.03) == "inconclusive"  # the upper end 0.03 does not exclude 0.03
    assert stats.verdict(e, literature=0.0301) == "does_not_hold"
    e = _estimate(-0.01, 0.02)  # interval [−0.03, 0.01]
    assert stats.verdict(e, literature=e.detectable * 1.001) == "does_not_hold"
    # excluded by the interval, but below what 3 seeds can detect: not a refutation
    assert stats.verdict(e, literature=e.detectable * 0.999) == "inconclusive"


def test_as_dict_is_what_verdict_json_records():
    d = stats.paired([0.8, 0.82, 0.81], [0.7, 0.71, 0.73]).as_dict()
    assert set(d) == {"design", "n_seeds", "effect", "sd", "ci95", "detectable_effect"} and d["n_seeds"] == 3
    assert d["effect"] == pytest.approx(0.0966667, abs=1e-6) and d["ci95"][0] < d["effect"] < d["ci95"][1]
    assert "± " in stats.summary(stats.paired([0.8, 0.82, 0.81], [0.7, 0.71, 0.73]))


def test_record_is_one_claims_verdict_json_entry():
    import json

    e = stats.paired([0.8, 0.82, 0.81], [0.7, 0.71, 0.73])
    r = json.loads(json.dumps(stats.record(e, 0.05, "DeVries & Taylor 2017, Table 1")))  # JSON-safe
    assert r["verdict"] == "holds" and r["literature"] == {"effect": 0.05, "source": "DeVries & Taylor 2017, Table 1"}
    assert r["ci95"] == pytest.approx(list(e.ci95)) and r["detectable_effect"] == pytest.approx(e.detectable)
    one = json.loads(json.dumps(stats.record(stats.paired([0.8], [0.7]), 0.05)))
    assert one["verdict"] == "inconclusive" and one["ci95"] == [None, None] and one["detectable_effect"] is None
