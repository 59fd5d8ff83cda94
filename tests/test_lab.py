"""`deeprob lab`: the lab's decisions from constructed numbers (holds / does_not_hold / inconclusive, margins,
directions, several parts); every claim end to end on tiny synthetic data with its verdict recomputed from the
per-seed numbers in verdict.json; a user override of a compared key refused in one line; the report, --list and
bad arguments."""
import json
import math

import pytest
import torch

from conftest import read_events, run_cli
from deeprob_cli import UserError, lab, stats
from deeprob_cli.lab.claim import Test as Part  # (not collected as a test class)

# synthetic 8×8 images, 192 train / 64 val, every design size × 0.02 (each claim's minimum sizes apply)
TINY = ["dataset=synthetic", "dataset.num_train=256", "dataset.val_size=64", "dataset.num_test=0",
        "dataset.image_size=8", "init_stats.dims=[64,64,64]"]
SCALE = 0.02
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------- decisions from constructed numbers

def test_a_clear_paired_effect_holds_with_the_paired_interval():
    a, b = [0.71, 0.71, 0.76], [0.66, 0.67, 0.70]
    record = lab.judge((a, b), Part(+1, "src", literature=0.05))
    reference = stats.paired(a, b)  # differences 0.05, 0.04, 0.06: mean 0.05, 95 % CI ≈ [0.025, 0.075]
    assert record["verdict"] == "holds" and record["effect"] == pytest.approx(0.05)
    assert record["ci95"] == pytest.approx(list(reference.ci95)) and record["ci95"][0] > 0
    assert record["detectable_effect"] == pytest.approx(reference.detectable)
    assert record["n_seeds"] == 3 and record["literature"] == {"effect": 0.05, "source": "src"}


def test_a_precise_null_result_refutes_the_literature_effect():
    # differences ±0.001 around 0: the design detects ≈0.003, far below the literature's 0.05, which it excludes
    record = lab.judge(([0.501, 0.499, 0.5005], [0.5, 0.5, 0.5]), Part(+1, "src", literature=0.05))
    assert record["detectable_effect"] < 0.05 and record["ci95"][1] < 0.05
    assert record["verdict"] == "does_not_hold"


def test_a_noisy_design_is_inconclusive_not_refuting():
    # differences +0.10, −0.08, +0.02: detectable effect ≫ 0.05, so neither holds nor refutes
    record = lab.judge(([0.6, 0.42, 0.52], [0.5, 0.5, 0.5]), Part(+1, "src", literature=0.05))
    assert record["detectable_effect"] > 0.05 and record["ci95"][0] < 0 < record["ci95"][1]
    assert record["verdict"] == "inconclusive"


def test_without_a_literature_effect_a_null_result_stays_inconclusive():
    record = lab.judge(([0.501, 0.499, 0.5005], [0.5, 0.5, 0.5]), Part(+1, "direction only"))
    assert record["verdict"] == "inconclusive"


def test_the_margin_turns_a_small_deficit_into_non_inferiority():
    a, b = [0.50, 0.51, 0.49], [0.51, 0.515, 0.50]  # a trails b by 0.005–0.01
    similar = lab.judge((a, b), Part(+1, "src", literature=0.03, margin=0.03))
    assert similar["effect"] == pytest.approx(0.03 - 0.025 / 3) and similar["verdict"] == "holds"
    plain = lab.judge((a, b), Part(+1, "src"))
    assert plain["verdict"] == "inconclusive"  # trailing is not "better"


def test_direction_minus_one_with_a_bound_as_margin():
    # zero_init: spreads of 0 and 3e-7 are below the bound 1e-5 (decided as spread − 1e-5 < 0)
    assert lab.judge(([0.0, 3e-7, 0.0], None), Part(-1, "src", literature=-1e-5, margin=-1e-5))["verdict"] == "holds"
    # spreads of 2e-5 ± 5e-7: above the bound, and the design resolves far less than the bound itself
    assert lab.judge(([2.0e-5, 2.1e-5, 2.05e-5], None), Part(-1, "src", literature=-1e-5, margin=-1e-5))["verdict"] \
        == "does_not_hold"


@pytest.mark.parametrize("sample", [([0.5], [0.4]), ([], []), ([0.5, math.nan, 0.7], [0.4, 0.4, 0.4])])
def test_too_few_or_non_finite_values_are_inconclusive(sample):
    record = lab.judge(sample, Part(+1, "src", literature=0.05))
    assert record["verdict"] == "inconclusive" and record["effect"] is None


@pytest.mark.parametrize("verdicts, expected", [
    (("holds", "holds"), "holds"),
    (("holds", "inconclusive"), "inconclusive"),
    (("inconclusive", "does_not_hold"), "does_not_hold"),
    (("holds", "does_not_hold"), "does_not_hold"),
])
def test_a_claim_holds_only_when_every_part_holds(verdicts, expected):
    records = {f"p{i}": {"verdict": v, "reason": f"r{i}"} for i, v in enumerate(verdicts)}
    verdict, reason = lab.overall(records)
    assert verdict == expected
    if expected != "holds":  # the reason names the parts that decided it
        assert all(f"p{i}" in reason for i, v in enumerate(verdicts) if v == expected)


def test_an_unmet_premise_leaves_the_claim_inconclusive_whatever_the_comparisons_say():
    premise = Part(+1, "the baseline overfits", margin=-0.9, premise=True)
    refuted = lab.judge(([0.501, 0.499, 0.5005], [0.5, 0.5, 0.5]), Part(+1, "src", literature=0.05))
    assert refuted["verdict"] == "does_not_hold"
    underfit = lab.judge(([0.64, 0.67, 0.68], None), premise)  # training accuracy 64–68 %: not overfitting
    verdict, reason = lab.overall({"gain": refuted, "baseline_overfits": underfit})
    assert verdict == "inconclusive" and "premise" in reason and "baseline_overfits" in reason
    overfit = lab.judge(([0.99, 1.0, 0.995], None), premise)
    assert overfit["verdict"] == "holds" and lab.overall({"gain": refuted, "baseline_overfits": overfit})[0] \
        == "does_not_hold"


@pytest.mark.parametrize("name", list(lab.CLAIMS))
def test_every_claim_declares_a_decidable_design(name):
    claim = lab.CLAIMS[name]
    assert claim.statement and len(claim.design) > 80 and claim.tests
    probe = stats.paired([1.0, 2.0, 3.0], [0.5, 1.0, 1.0])
    for part, test in claim.tests.items():
        assert test.direction in (1, -1) and test.source
        stats.decide(probe, test.literature, test.direction)  # raises where the literature contradicts the direction


# ---------------------------------------------------------------- every claim end to end

def recompute(part: dict, test: Part) -> tuple:
    """(verdict, effect, ci95, detectable) straight from the stored per-seed values, without the lab's code."""
    a = [x + part["margin"] for x in part["a"]]
    estimate = stats.one_sample(a) if part["b"] is None else stats.paired(a, part["b"])
    return stats.verdict(estimate, test.literature, test.direction), estimate.mean, estimate.ci95, estimate.detectable


def check_verdict(verdict: dict, claim, out):
    assert json.loads((out / "verdict.json").read_text()) == verdict
    assert verdict["claim"] == claim.name and verdict["statement"] == claim.statement
    assert verdict["design"] == claim.design and verdict["verdict"] in stats.VERDICTS
    assert set(verdict["parts"]) == set(claim.tests)
    for part, test in claim.tests.items():
        stored = verdict["parts"][part]
        assert stored["n_seeds"] == len(stored["a"]) == 3 and stored["margin"] == test.margin
        assert stored["premise"] == test.premise
        if not all(map(math.isfinite, [*stored["a"], *(stored["b"] or [])])):
            assert stored["verdict"] == "inconclusive"
            continue
        decision, effect, ci, detectable = recompute(stored, test)
        assert stored["verdict"] == decision and stored["effect"] == pytest.approx(effect, abs=1e-12)
        assert stored["ci95"] == pytest.approx(list(ci), abs=1e-12)
        assert stored["detectable_effect"] == (pytest.approx(detectable) if math.isfinite(detectable) else None)
        assert stored["literature"] == {"effect": test.literature, "source": test.source}
    parts = [p["verdict"] for p in verdict["parts"].values()]
    premise_met = all(p["verdict"] == "holds" for p in verdict["parts"].values() if p["premise"])
    expected = "inconclusive" if not premise_met else "does_not_hold" if "does_not_hold" in parts else \
        "holds" if set(parts) == {"holds"} else "inconclusive"
    assert verdict["verdict"] == expected
    head = verdict["parts"][next(iter(claim.tests))]
    assert (verdict["effect"], verdict["ci95"]) == (head["effect"], head["ci95"])
    assert verdict["command"].startswith(f"deeprob lab {claim.name} dataset=synthetic")
    assert (out / "figure.png").read_bytes()[:8] == PNG
    scalars, _ = read_events(out)  # the numbers as TensorBoard shows them
    for key, value in lab.runner.flatten(verdict["numbers"]).items():
        assert scalars[f"lab/numbers/{key}"][0][1] == pytest.approx(value, rel=1e-6, abs=1e-30)


def _signs(v):  # ∂L/∂w_ij = δ_i·x_j: rows fed positive sigmoid outputs share δ_i's sign, exactly
    shares = v["numbers"]["one_sign_share"]
    assert shares["sigmoid"] == [1.0] * 3 and max(shares["tanh"]) <= 0.05 and v["verdict"] == "holds"


def _zeros(v):  # zero init: the units moved in training, yet stay identical; random init: they differ
    assert max(v["numbers"]["unit_spread"]["zeros"]) <= 1e-5 < min(v["numbers"]["unit_spread"]["kaiming"])
    assert min(v["numbers"]["zeros_fc1_norm_after_training"]) > 0 and v["parts"]["zeros_identical"]["verdict"] == "holds"


def _residual(v):  # F(x) = 0: each stage-1 block is relu(x) = x, so the stem's variance is kept to the float
    assert v["numbers"]["stage1_growth"]["true"] == pytest.approx([1.0] * 3, abs=1e-6)
    assert min(v["numbers"]["stage1_growth"]["false"]) > 1.5 and v["verdict"] == "holds"


def _rewrite(v):  # the three classifiers are one function: identical logits, only the sensitivity differs
    assert max(v["numbers"]["rewrite_max_logit_difference"]) < 1e-3
    spread = v["numbers"]["eigenvalue_spread"]  # a large mean adds one large eigenvalue: centring removes it
    assert spread["raw"] > spread["centred"] and spread["raw"] > spread["standardized"]


def _test_time(v):  # the mean of the head over 1,000 dropout masks of its input: the unmasked output, within MC error
    assert max(v["numbers"]["head_relative_error_1000_masks"]) < 0.1


EXACT = {"not_zero_centred": _signs, "zero_init": _zeros, "residual_init": _residual, "normalization": _rewrite,
         "dropout_test_time": _test_time}


@pytest.mark.parametrize("name", list(lab.CLAIMS))  # each ≤ 2 s at lab.scale=0.02 on one thread
def test_claim_runs_and_its_verdict_follows_from_its_numbers(name, tmp_path):
    claim = lab.CLAIMS[name]
    out = tmp_path / name
    verdict = lab.run_claim(claim, TINY, out, scale=SCALE, log=lambda *_: None)
    check_verdict(verdict, claim, out)
    if name in EXACT:
        EXACT[name](verdict)


# ---------------------------------------------------------------- the command line

@pytest.mark.parametrize("claim, override, key", [("saturation", "activation=gelu", "activation"),
                                                  ("dead_relu", "init.bias=0.5", "init.bias"),
                                                  ("augmentation", "augment=[flip]", "augment"),
                                                  ("dropout", "optim.lr=0.1", "optim.lr"),
                                                  ("dropout", "+regularizer=[l2]", "regularizer")])
def test_an_override_of_what_the_claim_sets_is_one_line(claim, override, key, capsys, tmp_path):
    assert lab.main([claim, "dataset=synthetic", override, f"out={tmp_path / 'x'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"deeprob lab: error: {key}:") and override in err
    assert not (tmp_path / "x").exists()  # refused before anything ran


def test_other_overrides_reach_the_claims_models(tmp_path):
    verdict = lab.run_claim(lab.CLAIMS["saturation"], [*TINY, "model.width=32"], tmp_path / "s", scale=SCALE,
                            log=lambda *_: None)
    per_layer = verdict["numbers"]["grad_norm_per_layer"]["relu"][0]
    assert len(per_layer) == 9  # the claim's 8 hidden layers (its design) + the classifier


@pytest.mark.parametrize("arg, key", [("lab.scale=0", "lab.scale"), ("lab.scale=nan", "lab.scale"),
                                      ("lab.seeds=1", "lab.seeds"), ("lab.threads=x", "lab.threads"),
                                      ("lab.seed=3", "lab.seed")])
def test_bad_lab_keys_are_one_line(arg, key, capsys):
    assert lab.main(["saturation", arg]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{key}:" in err


def test_several_claims_write_a_report_that_renders_each(tmp_path, capsys):
    out = tmp_path / "lecture"
    assert lab.main(["not_zero_centred", "zero_init", *TINY, f"lab.scale={SCALE}", f"out={out}"]) == 0
    report = (out / "REPORT.md").read_text()
    for name in ("not_zero_centred", "zero_init"):
        verdict = json.loads((out / name / "verdict.json").read_text())
        assert f"## {name}" in report and f"| [{name}](#{name}) | {verdict['verdict']} |" in report
        assert f"![{name}]({name}/figure.png)" in report and verdict["design"] in report
        assert verdict["command"] in report
    printed = capsys.readouterr().out
    assert "report:" in printed and "total" in printed
    (out / "REPORT.md").unlink()  # re-rendered from the verdicts alone, e.g. after re-running one claim
    assert lab.main(["--report", str(out / "REPORT.md")]) == 0
    assert (out / "REPORT.md").read_text().split("\n", 8)[8] == report.split("\n", 8)[8]


def test_report_renders_every_claim_and_its_verdict(tmp_path):
    verdicts = []
    for i, claim in enumerate(lab.CLAIMS.values()):
        folder = tmp_path / claim.name
        folder.mkdir()
        (folder / "figure.png").write_bytes(PNG)
        samples = {p: ([0.1 * (i % 3) + 0.01 * k for k in range(3)], [0.1, 0.1, 0.1]) for p in claim.tests}
        verdicts.append({"claim": claim.name, "statement": claim.statement, "design": claim.design,
                         **lab.decide_claim(claim, samples), "numbers": {}, "notes": [], "command": "deeprob lab x",
                         "figure": "figure.png", "folder": str(folder), "seconds": 1.0})
    report = lab.report.render_report(verdicts, tmp_path, "deeprob lab --all")
    table = [line for line in report.splitlines() if line.startswith("| [")]
    assert len(table) == len(lab.CLAIMS) == 16
    for v, line in zip(verdicts, table):
        assert f"| {v['verdict']} |" in line
        assert f"## {v['claim']}" in report and v["statement"] in report
        assert f"![{v['claim']}]({v['claim']}/figure.png)" in report


def test_list_names_every_claim(tmp_path):
    lines = run_cli("lab", "--list", cwd=tmp_path).stdout.splitlines()
    assert [line.split()[0] for line in lines] == list(lab.CLAIMS)


def test_unknown_claim_is_one_line_listing_the_claims(capsys):
    assert lab.main(["relu_sped", "dataset=synthetic"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "relu_sped" in err and all(n in err for n in lab.CLAIMS)


def test_claim_folder_with_results_is_refused(tmp_path):
    (tmp_path / "verdict.json").write_text("{}")
    with pytest.raises(UserError, match="already holds results"):
        lab.run_claim(lab.CLAIMS["saturation"], TINY, tmp_path)
