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
    a, b = [0.71, 0.71, 0.76, 0.72, 0.73], [0.66, 0.67, 0.70, 0.67, 0.68]
    record = lab.judge((a, b), Part(+1, "src", size=0.05), planned=5)
    reference = stats.paired(a, b)  # differences 0.05, 0.04, 0.06, 0.05, 0.05
    assert record["verdict"] == "holds" and record["effect"] == pytest.approx(0.05)
    assert record["ci95"] == pytest.approx(list(reference.ci95)) and record["ci95"][0] > 0
    assert record["p"] == pytest.approx(1 - stats.t_cdf(reference.mean / reference.se, 4), rel=1e-9)
    assert record["n_seeds"] == 5 and record["literature"] == {"size": 0.05, "source": "src"}


def test_the_detectable_effect_is_information_computed_at_the_planned_seed_count():
    a, b = [0.6, 0.42, 0.52], [0.5, 0.5, 0.5]  # 3 seeds of an exploratory look at an 8-seed design
    record = lab.judge((a, b), Part(+1, "src"), planned=8)
    sd = stats.paired(a, b).sd
    assert record["detectable_effect"] == pytest.approx(stats.detectable_effect(sd / math.sqrt(8), 7))
    assert record["detectable_effect"] < stats.paired(a, b).detectable  # 8 planned seeds resolve more than 3
    assert record["verdict"] == "inconclusive"  # [−0.2, 0.25]: the interval decides, not the power


def test_a_significant_reversal_refutes_a_direction_only_part():
    # the mixup: −0.122 [−0.145, −0.099] on a direction-only part was "nothing to refute"
    record = lab.judge(([0.30, 0.31, 0.29, 0.30, 0.31], [0.42, 0.43, 0.41, 0.42, 0.44]), Part(+1, "direction"))
    assert record["ci95"][1] < 0 and record["verdict"] == "does_not_hold" and "opposite" in record["reason"]


def test_non_inferiority_holds_inside_the_margin_and_refutes_beyond_it():
    a = [0.500, 0.505, 0.495, 0.502, 0.498]
    inside = lab.judge((a, [x + 0.005 for x in a[::-1]]), Part(+1, "src", margin=0.01))  # trails by ≈0.005
    assert -0.01 < inside["ci95"][0] < inside["ci95"][1] < 0 and inside["verdict"] == "holds"
    beyond = lab.judge((a, [x + 0.03 for x in a]), Part(+1, "src", margin=0.01))  # trails by exactly 0.03
    assert beyond["verdict"] == "does_not_hold" and beyond["kind"] == "non-inferiority"


def test_exact_parts_are_decided_as_exact_and_named():
    test = Part(-1, "src", exact=1e-5, identity="identical units get identical gradients")
    record = lab.judge(([0.0, 3e-7, 0.0, 0.0, 1e-6], None), test)
    assert record["verdict"] == "exact" and record["ci95"] == [None, None] and record["p"] is None
    assert "identical units" in record["reason"] and record["kind"] == "exact"
    assert lab.judge(([0.0, 2e-5, 0.0, 0.0, 0.0], None), test)["verdict"] == "does_not_hold"


@pytest.mark.parametrize("sample", [([0.5], [0.4]), ([], []), ([0.5, math.nan, 0.7], [0.4, 0.4, 0.4])])
def test_too_few_or_non_finite_values_are_inconclusive(sample):
    record = lab.judge(sample, Part(+1, "src", size=0.05))
    assert record["verdict"] == "inconclusive" and record["effect"] is None


def _record(verdict, p):
    return {"verdict": verdict, "reason": verdict, "p": p}


@pytest.mark.parametrize("parts, expected, p", [
    ((("holds", 0.01), ("holds", 0.002)), "holds", 0.01),                  # intersection-union: the largest p
    ((("holds", 0.01), ("exact", None)), "holds", 0.01),
    ((("exact", None), ("exact", None)), "exact", None),                   # counted apart from Holm's family
    ((("holds_smaller", 0.001), ("holds", 0.01)), "holds_smaller", 0.01),
    ((("holds", 0.01), ("inconclusive", 0.2)), "inconclusive", 0.2),
    ((("inconclusive", 0.2), ("does_not_hold", 0.003)), "does_not_hold", 0.003),
    ((("exact", None), ("does_not_hold", None)), "does_not_hold", None),
])
def test_a_claim_holds_only_when_every_part_holds(parts, expected, p):
    verdict, reason, combined = lab.overall({f"p{i}": _record(*part) for i, part in enumerate(parts)})
    assert verdict == expected and combined == p


def _fake_claim(measure, tests=None, seeds=5, premise="the regime"):
    return lab.Claim("fake", "a statement", "a design " * 12, tests or {"gain": Part(+1, "src")}, (), measure,
                     seeds, premise)


def test_a_premise_not_met_on_the_first_seed_aborts_before_the_rest_run(tmp_path):
    ran = []

    def measure(ctx):
        check = lambda first: (first[0] > 0.9, f"training accuracy {first[0]:.2f}")  # noqa: E731
        ctx.premised(lambda seed: ran.append(seed) or 0.64, lambda seed: [(seed,)], check)
        raise AssertionError("not reached")

    verdict = lab.run_claim(_fake_claim(measure), [], tmp_path / "f", log=lambda *_: None)
    assert ran == [0] and verdict["verdict"] == "premise_not_met" and "training accuracy 0.64" in verdict["reason"]
    assert verdict["premise"] == {"statement": "the regime", "met": False, "measured": "training accuracy 0.64"}
    assert json.loads((tmp_path / "f" / "verdict.json").read_text())["verdict"] == "premise_not_met"


def test_a_met_premise_runs_every_seed_and_is_recorded(tmp_path):
    def measure(ctx):
        results = ctx.premised(lambda seed: 0.5 + 0.01 * seed, lambda seed: [(seed,)], lambda f: (True, "ok"))
        return {"gain": ([results[s][0] for s in ctx.seeds], [0.4] * len(ctx.seeds))}, {}

    verdict = lab.run_claim(_fake_claim(measure), [], tmp_path / "f", log=lambda *_: None)
    assert verdict["parts"]["gain"]["a"] == [0.5, 0.51, 0.52, 0.53, 0.54] and verdict["premise"]["met"]
    assert verdict["verdict"] == "holds" and not verdict["exploratory"]


def test_lab_seeds_may_only_raise_the_planned_count_and_marks_the_run_exploratory(tmp_path):
    def measure(ctx):
        return {"gain": ([0.5 + 0.01 * s for s in ctx.seeds], [0.4] * len(ctx.seeds))}, {}

    with pytest.raises(UserError, match="below fake's planned 5 seeds"):
        lab.run_claim(_fake_claim(measure), [], tmp_path / "low", seeds=3)
    verdict = lab.run_claim(_fake_claim(measure), [], tmp_path / "more", seeds=7, log=lambda *_: None)
    assert verdict["n_seeds"] == 7 and verdict["planned_seeds"] == 5 and verdict["exploratory"]
    assert "lab.seeds=7" in verdict["command"]


def test_every_comparative_claim_plans_at_least_five_seeds_and_says_why():
    for claim in lab.CLAIMS.values():
        assert claim.seeds >= 5 and f"{claim.seeds} seeds" in claim.design, claim.name
    with pytest.raises(AssertionError, match="≥ 5 seeds"):
        lab.claim.claim("x", "s", "d", {"p": Part(+1, "src")}, seeds=3)


@pytest.mark.parametrize("name", list(lab.CLAIMS))
def test_every_claim_declares_a_decidable_design(name):
    claim = lab.CLAIMS[name]
    assert claim.statement and len(claim.design) > 80 and claim.tests
    probe = stats.paired([1.0, 2.0, 3.0], [0.5, 1.0, 1.0])
    for part, test in claim.tests.items():
        assert test.direction in (1, -1) and test.source
        if test.exact is None:  # raises where margin, size and equivalence contradict each other
            stats.decide(probe, test.direction, test.margin, test.size, test.equivalence)
        else:
            assert test.identity


def test_no_function_of_the_lab_is_over_60_lines():
    import ast
    from pathlib import Path

    for path in Path(lab.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                assert node.end_lineno - node.lineno + 1 <= 60, f"{path.name}: {node.name}"


# ---------------------------------------------------------------- every claim end to end

def recompute(part: dict, test: Part) -> tuple:
    """(verdict, effect, ci95) straight from the stored per-seed values, without the lab's code."""
    if test.exact is not None:
        return stats.decide_exact(part["a"], test.exact, test.direction, test.identity).verdict, None, [None, None]
    estimate = stats.one_sample(part["a"]) if part["b"] is None else stats.paired(part["a"], part["b"])
    decision = stats.decide(estimate, test.direction, test.margin, test.size, test.equivalence)
    return decision.verdict, estimate.mean, list(estimate.ci95)


def expected_overall(parts: list) -> str:
    if "does_not_hold" in parts:
        return "does_not_hold"
    if "inconclusive" in parts:
        return "inconclusive"
    return "exact" if set(parts) == {"exact"} else "holds_smaller" if "holds_smaller" in parts else "holds"


def check_verdict(verdict: dict, claim, out):
    assert json.loads((out / "verdict.json").read_text()) == verdict
    assert verdict["claim"] == claim.name and verdict["statement"] == claim.statement
    assert verdict["design"] == claim.design and verdict["planned_seeds"] == claim.seeds
    assert verdict["command"].startswith(f"deeprob lab {claim.name} dataset=synthetic")
    if verdict["verdict"] == "premise_not_met":  # aborted after the first seed, with the measured reason
        assert claim.premise and not verdict["premise"]["met"] and verdict["premise"]["measured"] in verdict["reason"]
        return
    assert (out / "figure.png").read_bytes()[:8] == PNG
    assert set(verdict["parts"]) == set(claim.tests) and (verdict["premise"] is not None) == bool(claim.premise)
    for part, test in claim.tests.items():
        stored = verdict["parts"][part]
        assert stored["n_seeds"] == len(stored["a"]) and stored["margin"] == test.margin
        if not all(map(math.isfinite, [*stored["a"], *(stored["b"] or [])])):
            assert stored["verdict"] == "inconclusive"
            continue
        decision, effect, ci = recompute(stored, test)
        assert stored["verdict"] == decision and stored["effect"] == (None if effect is None else
                                                                      pytest.approx(effect, abs=1e-12))
        assert stored["ci95"] == (ci if None in ci else pytest.approx(ci, abs=1e-12))
        assert stored["literature"] == {"size": test.size, "source": test.source}
    assert verdict["verdict"] == expected_overall([p["verdict"] for p in verdict["parts"].values()])
    head = verdict["parts"][next(iter(claim.tests))]
    assert (verdict["effect"], verdict["ci95"]) == (head["effect"], head["ci95"])
    scalars, _ = read_events(out)  # the numbers as TensorBoard shows them
    for key, value in lab.runner.flatten(verdict["numbers"]).items():
        assert scalars[f"lab/numbers/{key}"][0][1] == pytest.approx(value, rel=1e-6, abs=1e-30)


def _signs(v):  # ∂L/∂w_ij = δ_i·x_j: rows fed positive sigmoid outputs share δ_i's sign, exactly
    shares = v["numbers"]["one_sign_share"]
    assert shares["sigmoid"] == [1.0] * 5 and max(shares["tanh"]) <= 0.05 and v["verdict"] == "exact"


def _zeros(v):  # zero init: the units moved in training, yet stay identical; random init: they differ
    assert max(v["numbers"]["unit_spread"]["zeros"]) <= 1e-5 < min(v["numbers"]["unit_spread"]["kaiming"])
    assert min(v["numbers"]["zeros_fc1_norm_after_training"]) > 0
    assert v["parts"]["zeros_identical"]["verdict"] == "exact"
    assert v["premise"]["met"]


def _residual(v):  # F(x) = 0: each stage-1 block is relu(x) = x, so the stem's variance is kept to the float
    assert v["numbers"]["stage1_growth"]["true"] == pytest.approx([1.0] * 5, abs=1e-6)
    assert min(v["numbers"]["stage1_growth"]["false"]) > 1.5 and v["parts"]["zero_keeps"]["verdict"] == "exact"


def _rewrite(v):  # the three classifiers are one function: identical logits, only the sensitivity differs
    assert max(v["numbers"]["rewrite_max_logit_difference"]) < 1e-3
    spread = v["numbers"]["eigenvalue_spread"]  # a large mean adds one large eigenvalue: centring removes it
    assert spread["raw"] > spread["centred"] and spread["raw"] > spread["standardized"]


def _test_time(v):  # the mean of the head over 1,000 dropout masks of its input: the unmasked output, within MC error
    assert max(v["numbers"]["head_relative_error_1000_masks"]) < 0.1


def _saturated(v):  # the same weights: a ±3 bias on one layer's units shrinks the gradients below it, not above
    norms = v["numbers"]["grad_norm_per_layer"]
    for plain, biased in zip(norms["sigmoid"], norms["sigmoid_saturated"]):
        assert biased[0] < plain[0] and biased[-1] == pytest.approx(plain[-1], rel=0.5)


EXACT = {"not_zero_centred": _signs, "zero_init": _zeros, "residual_init": _residual, "normalization": _rewrite,
         "dropout_test_time": _test_time, "saturation": _saturated}


@pytest.mark.parametrize("name", list(lab.CLAIMS))  # each a few seconds at lab.scale=0.02 on one thread
def test_claim_runs_and_its_verdict_follows_from_its_numbers(name, tmp_path):
    claim = lab.CLAIMS[name]
    out = tmp_path / name
    verdict = lab.run_claim(claim, TINY, out, scale=SCALE, log=lambda *_: None)
    check_verdict(verdict, claim, out)
    if name in EXACT:
        EXACT[name](verdict)


def test_sub_runs_two_at_a_time_give_exactly_the_one_by_one_numbers(tmp_path):
    """Both cores: Context.map runs sub-runs in 2 worker processes (one torch thread each); every per-seed number
    and verdict equals the sequential run's, compared exactly."""
    claim = lab.CLAIMS["dropout"]
    one = lab.run_claim(claim, TINY, tmp_path / "one", scale=SCALE, log=lambda *_: None, workers=1)
    two = lab.run_claim(claim, TINY, tmp_path / "two", scale=SCALE, log=lambda *_: None, workers=2)
    assert one["numbers"] == two["numbers"] and one["parts"] == two["parts"] and one["verdict"] == two["verdict"]
    assert len(set(one["numbers"]["val_acc"]["none"])) > 1  # the seeds differ: the comparison is not vacuous


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
        assert f"## {name}" in report and f"| [{name}](#{name}) | {verdict['verdict']} (exploratory) |" in report
        assert f"![{name}]({name}/figure.png)" in report and verdict["design"] in report
        assert lab.CLAIMS[name].practice and f"**In practice** (if the verdict holds): {lab.CLAIMS[name].practice}" \
            in report
        assert verdict["command"] in report
    printed = capsys.readouterr().out
    assert "report:" in printed and "total" in printed
    (out / "REPORT.md").unlink()  # re-rendered from the verdicts alone, e.g. after re-running one claim
    assert lab.main(["--report", str(out / "REPORT.md")]) == 0
    assert (out / "REPORT.md").read_text().split("\n", 8)[8] == report.split("\n", 8)[8]


def test_report_renders_every_claim_with_its_holm_adjusted_verdict(tmp_path):
    verdicts = []
    for i, claim in enumerate(lab.CLAIMS.values()):
        folder = tmp_path / claim.name
        folder.mkdir()
        (folder / "figure.png").write_bytes(PNG)
        samples = {p: ([t.exact] * 5, None) if t.exact is not None else
                   ([0.1 * (i % 3) + 0.01 * k for k in range(5)], [0.1] * 5) for p, t in claim.tests.items()}
        verdicts.append({"claim": claim.name, "statement": claim.statement, "design": claim.design,
                         **lab.decide_claim(claim, samples), "numbers": {}, "notes": [], "command": "deeprob lab x",
                         "figure": "figure.png", "folder": str(folder), "seconds": 1.0, "premise": None})
    report = lab.report.render_report(verdicts, tmp_path, "deeprob lab --all")
    table = [line for line in report.splitlines() if line.startswith("| [")]
    assert len(table) == len(lab.CLAIMS) == 16
    holm, adjusted = stats.holm_verdicts([v["verdict"] for v in verdicts], [v["p"] for v in verdicts])
    for v, line, h, p in zip(verdicts, table, holm, adjusted):
        cells = [c.strip() for c in line.split("|")]
        assert cells[2] == v["verdict"] and cells[3] == h and cells[4] == ("—" if p is None else f"{p:.3g}")
        assert f"## {v['claim']}" in report and v["statement"] in report
        assert f"![{v['claim']}]({v['claim']}/figure.png)" in report
    assert "exact" in holm and f"After Holm: " in report


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


def test_mean_image_scale_keeps_krizhevsky_s_0_to_255_inputs():
    from deeprob_cli.components.preprocess import MeanImage

    images = torch.randint(0, 256, (64, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    x = images.float().div(255)
    plain, scaled = MeanImage().fit(images)(x), MeanImage(scale=255).fit(images)(x)
    assert torch.allclose(scaled, 255 * plain) and torch.allclose(scaled, images.float() - images.float().mean(0),
                                                                  atol=1e-3)
