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
    assert stats.decide(stats.paired(a, b)).verdict == "holds"
    assert stats.decide(stats.unpaired(a, b)).verdict == "inconclusive"


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


def _estimate(mean, half_width, n=5):
    """A paired estimate with the given mean and 95 % half-width (n seeds)."""
    se = half_width / stats.t_quantile(0.975, n - 1)
    return stats.Estimate(n, mean, se * math.sqrt(n), se, n - 1, "paired")


def _verdict(mean, half, **kw):
    return stats.decide(_estimate(mean, half), **kw).verdict


@pytest.mark.parametrize("mean, half, kw, expected", [
    (0.05, 0.02, {}, "holds"),                                  # [0.03, 0.07] above 0
    (-0.05, 0.02, {"direction": -1}, "holds"),                  # expected negative (e.g. an error rate falls)
    (0.0, 0.01, {}, "inconclusive"),                            # straddles 0, no size stated: nothing refuted
    (-0.05, 0.01, {}, "does_not_hold"),                         # rule 2: a significant reversal refutes
    (0.05, 0.01, {"direction": -1}, "does_not_hold"),           # ... in either direction
    (-0.05, 0.04, {}, "does_not_hold"),                         # rule 3: no power gate, the interval decides
    (0.01, 0.005, {"size": 0.04}, "holds_smaller"),             # rule 6: [0.005, 0.015] below the stated 0.04
    (0.03, 0.02, {"size": 0.04}, "holds"),                      # [0.01, 0.05] holds the stated size
    (0.0, 0.01, {"size": 0.04}, "does_not_hold"),               # holds 0, excludes the stated size
    (0.02, 0.03, {"size": 0.04}, "inconclusive"),               # [−0.01, 0.05]: holds 0 and the size
])
def test_superiority_decides_on_the_interval(mean, half, kw, expected):
    assert _verdict(mean, half, **kw) == expected


@pytest.mark.parametrize("mean, half, expected", [
    (-0.005, 0.003, "holds"),          # [−0.008, −0.002]: worse than 0, but inside the margin 0.01 (rule 1)
    (-0.009, 0.0009, "holds"),         # [−0.0099, −0.0081]: just inside
    (-0.015, 0.004, "does_not_hold"),  # [−0.019, −0.011]: wholly beyond −0.01
    (-0.011, 0.004, "inconclusive"),   # [−0.015, −0.007]: straddles −0.01
    (0.02, 0.005, "holds"),            # better is not worse
])
def test_non_inferiority_is_two_one_sided_tests_against_the_margin(mean, half, expected):
    assert _verdict(mean, half, margin=0.01) == expected


@pytest.mark.parametrize("mean, half, expected", [
    (0.002, 0.005, "holds"),           # [−0.003, 0.007] inside ±0.01
    (-0.004, 0.005, "holds"),
    (0.015, 0.004, "does_not_hold"),   # wholly above +0.01
    (-0.015, 0.004, "does_not_hold"),  # wholly below −0.01
    (0.008, 0.005, "inconclusive"),    # crosses +0.01
])
def test_equivalence_needs_the_interval_inside_both_margins(mean, half, expected):
    assert _verdict(mean, half, margin=0.01, equivalence=True) == expected


@pytest.mark.parametrize("n", [3, 5, 10])
def test_a_true_difference_on_the_margin_is_refuted_at_most_one_time_in_forty(n):
    """The issue's simulation (margin 0.01, sd 0.005): the old rule refuted a true −0.009 in 26–91 % of designs.
    With TOST, a true difference inside the margin is refuted less often than α = 0.025, and one exactly on the
    margin 2.5 % of the time."""
    trials, t = 20_000, stats.t_quantile(0.975, n - 1)
    g = torch.Generator().manual_seed(n)
    for true, most in ((-0.005, 1e-3), (-0.009, 0.025), (-0.01, 0.025 + 0.004)):
        x = true + 0.005 * torch.randn(trials, n, generator=g, dtype=torch.float64)
        upper = x.mean(1) + t * x.std(1) / math.sqrt(n)
        assert (upper < -0.01).double().mean().item() <= most, (true, n)
    x = -0.01 + 0.005 * torch.randn(trials, n, generator=g, dtype=torch.float64)
    upper = x.mean(1) + t * x.std(1) / math.sqrt(n)
    assert (upper < -0.01).double().mean().item() == pytest.approx(0.025, abs=0.004)
    for row, up in zip(x[:300].tolist(), upper[:300].tolist()):  # the vectorized rule is stats.decide's
        assert (stats.decide(stats.one_sample(row), margin=0.01).verdict == "does_not_hold") == (up < -0.01)


def test_one_sided_p_values_against_the_closed_form_for_df_2():
    e = stats.Estimate(3, 2.0, math.sqrt(3), 1.0, 2, "paired")  # t = 2 at df 2: P(T ≤ 2) = 0.5 + 2/(2√6)
    assert stats.p_above(e, 0.0) == pytest.approx(0.5 - 1 / math.sqrt(6), rel=1e-12)
    assert stats.p_below(e, 0.0) == pytest.approx(0.5 + 1 / math.sqrt(6), rel=1e-12)
    assert stats.p_above(e, 1.0) == pytest.approx(0.5 - 1 / (2 * math.sqrt(3)), rel=1e-12)  # t = 1: 1/(2√3)
    # a holds verdict's p is the one-sided test of the side it decided: below 0.025 exactly when lo > bound
    for mean in (0.0305, 0.0295):
        d = stats.decide(_estimate(mean, 0.03))
        assert (d.verdict == "holds") == (d.p < 0.025)


def test_exact_outcomes_are_every_seed_within_the_bound():
    d = stats.decide_exact([1.0, 1.0, 1.0, 1.0, 1.0], 1.0, +1, "x_j > 0")
    assert d.verdict == "exact" and "x_j > 0" in d.reason and math.isnan(d.p)
    d = stats.decide_exact([0.0, 3e-7, 2e-5, 0.0, 0.0], 1e-5, -1, "symmetry")
    assert d.verdict == "does_not_hold" and "seed 2" in d.reason and "2e-05" in d.reason


def test_holm_by_hand():
    # sorted 0.005 (×4), 0.01 (×3), 0.03 (×2), 0.04 (×1), each the running maximum
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    verdicts, adjusted = stats.holm_verdicts(["holds", "does_not_hold", "holds", "holds", "exact"],
                                             [0.01, 0.04, 0.03, 0.005, None])
    assert verdicts == ["inconclusive", "inconclusive", "inconclusive", "holds", "exact"]
    assert adjusted[:4] == pytest.approx([0.03, 0.06, 0.06, 0.02]) and adjusted[4] is None


def test_holm_drops_the_issues_five_claims_at_three_seeds():
    # the issue's 11 "holds" among 16 headline verdicts: six with p ≈ 0 and these five
    ps = [1e-6] * 6 + [0.0028, 0.0067, 0.011, 0.016, 0.021] + [0.5] * 5
    verdicts, _ = stats.holm_verdicts(["holds"] * 11 + ["inconclusive"] * 5, ps)
    assert verdicts.count("holds") == 6 and verdicts[6:11] == ["inconclusive"] * 5


def test_decide_refuses_bad_arguments():
    with pytest.raises(ValueError, match="direction"):
        stats.decide(_estimate(0.1, 0.01), direction=0)
    with pytest.raises(ValueError, match="margin"):
        stats.decide(_estimate(0.1, 0.01), equivalence=True)
    with pytest.raises(ValueError, match="size"):
        stats.decide(_estimate(0.1, 0.01), size=-0.05)
    one = stats.decide(stats.paired([0.9], [0.1]))  # a huge difference from one seed is still no evidence
    assert one.verdict == "inconclusive" and "n = 1" in one.reason


def test_as_dict_is_what_verdict_json_records():
    d = stats.paired([0.8, 0.82, 0.81], [0.7, 0.71, 0.73]).as_dict()
    assert set(d) == {"design", "n_seeds", "effect", "sd", "ci95", "detectable_effect"} and d["n_seeds"] == 3
    assert d["effect"] == pytest.approx(0.0966667, abs=1e-6) and d["ci95"][0] < d["effect"] < d["ci95"][1]
    assert "± " in stats.summary(stats.paired([0.8, 0.82, 0.81], [0.7, 0.71, 0.73]))
