"""`deeprob lab`: every claim runs end to end in a tiny synthetic setting and leaves a figure, TensorBoard logs
and a well-formed verdict.json; the lecture's exact statements (one-sign gradient rows, zero-init symmetry,
zero-residual identity) hold to the float; the report renders every claim; --list and an unknown claim."""
import json

import pytest
import torch

from conftest import read_events, run_cli
from deeprob_cli import UserError, lab

# synthetic 8×8 images, 128 train / 64 val, one epoch of 4 steps, one thread: every claim in seconds
TINY = ["dataset=synthetic", "dataset.num_train=192", "dataset.val_size=64", "dataset.num_test=0",
        "dataset.image_size=8", "dataset.subset=null", "trainer.epochs=1", "trainer.batch_size=32",
        "trainer.threads=1", "init_stats.dims=[64,64,64]", "log.hist_every=2"]
# claims with several sub-command invocations or many jobs: run with `pytest -m slow`
SLOW = {"dead_relu", "init_depth", "regularizers", "activations"}
PNG = b"\x89PNG\r\n\x1a\n"


def _signs(n):  # ∂L/∂w_ij = δ_i·x_j: rows fed positive sigmoid outputs share δ_i's sign, exactly
    assert n["sigmoid_one_sign_rows"] == 1.0 and n["tanh_one_sign_rows"] <= 0.01


def _zeros(n):  # zero init: the units moved in training, yet stay identical; random init: they differ
    assert max(n["zeros"]["unit_spread"]) <= 1e-5 and n["zeros"]["weight_norm"][0] > 0
    assert min(n["kaiming"]["unit_spread"]) > 0.1


def _residual(n):  # F(x) = 0: each stage-1 block is relu(x) = x, so the stem's variance is kept to the float
    assert n["stage1_growth_zero_residual"] == pytest.approx(1.0, abs=1e-6) and n["stage1_growth"] > 1.0


# the lecture's statements that hold exactly, whatever the data: checked on the tiny setting's numbers
EXACT = {"not_zero_centred": _signs, "zero_init": _zeros, "residual_init": _residual}


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def check_verdict(verdict: dict, claim: lab.Claim, out):
    """verdict.json's keys and types, and the files a student opens: figure.png and TensorBoard events."""
    on_disk = json.loads((out / "verdict.json").read_text())
    assert on_disk == verdict
    assert {"claim", "statement", "holds", "numbers", "threshold", "justification", "commands"} <= set(verdict)
    assert verdict["claim"] == claim.name and verdict["statement"] == claim.statement
    assert isinstance(verdict["holds"], bool)
    assert verdict["threshold"] == claim.threshold and verdict["threshold"]
    assert isinstance(verdict["numbers"], dict) and lab.flatten(verdict["numbers"])
    assert all(isinstance(c, str) for c in verdict["commands"])
    assert len(verdict["commands"]) == len(claim.runs) + bool(claim.in_process)
    for (name, args), command in zip(claim.runs, verdict["commands"]):
        assert command.startswith(f"deeprob {args[0]} ") and "dataset=synthetic" in command
        assert (out / name).is_dir()
    assert (out / "figure.png").read_bytes()[:8] == PNG
    scalars, _ = read_events(out)  # every number of the verdict, as TensorBoard shows it
    for key, value in lab.flatten(verdict["numbers"]).items():
        assert scalars[f"lab/{key}"][0][1] == pytest.approx(value, rel=1e-6, abs=1e-30)


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in lab.CLAIMS])
def test_claim_runs_and_writes_its_verdict(name, tmp_path):
    claim = lab.CLAIMS[name]
    out = tmp_path / name
    verdict = lab.run_claim(claim, TINY, out, log=lambda *_: None)
    check_verdict(verdict, claim, out)
    for sub, _ in claim.runs:  # the sub-runs' own TensorBoard logs and summaries (or init-stats' stats.json)
        runs = [p.parent.parent for p in (out / sub).rglob(".hydra/config.yaml")]
        assert runs and all(list(r.glob("events.out.tfevents.*")) for r in runs)
        assert all((r / "summary.json").is_file() or (r / "stats.json").is_file() for r in runs)
    if name in EXACT:
        EXACT[name](verdict["numbers"])


def test_several_claims_write_a_report_that_renders_each(tmp_path, capsys):
    out = tmp_path / "lecture"
    assert lab.main(["saturation", "residual_init", *TINY, f"out={out}"]) == 0
    report = (out / "REPORT.md").read_text()
    for name in ("saturation", "residual_init"):
        verdict = json.loads((out / name / "verdict.json").read_text())
        assert f"## {name}" in report and f"| [{name}](#{name}) |" in report
        assert f"![{name}]({name}/figure.png)" in report and verdict["statement"] in report
    assert "report:" in capsys.readouterr().out
    (out / "REPORT.md").unlink()  # re-rendered from the verdicts alone, e.g. after re-running one claim
    assert lab.main(["--report", str(out / "REPORT.md")]) == 0
    assert (out / "REPORT.md").read_text().split("\n", 3)[3] == report.split("\n", 3)[3]


def test_report_renders_every_claim(tmp_path):
    verdicts = []
    for i, claim in enumerate(lab.CLAIMS.values()):
        folder = tmp_path / claim.name
        folder.mkdir()
        (folder / "figure.png").write_bytes(PNG)
        verdicts.append({"claim": claim.name, "statement": claim.statement, "holds": i % 2 == 0,
                         "numbers": {k: 0.5 for k in claim.extra["headline"]}, "threshold": claim.threshold,
                         "justification": claim.justification, "commands": ["deeprob train -m x=1,2"],
                         "figure": "figure.png", "folder": str(folder), "seconds": 1.0})
    report = lab.render_report(verdicts, tmp_path, "deeprob lab --all")
    table = [line for line in report.splitlines() if line.startswith("| [")]
    assert len(table) == len(lab.CLAIMS) == 12
    assert sum("| **no** |" in line for line in table) == 6  # a claim that does not hold is shown as such
    for claim in lab.CLAIMS.values():
        assert f"## {claim.name}" in report and claim.statement in report
        assert f"![{claim.name}]({claim.name}/figure.png)" in report


def test_list_names_every_claim(tmp_path):
    lines = run_cli("lab", "--list", cwd=tmp_path).stdout.splitlines()
    assert [line.split()[0] for line in lines] == list(lab.CLAIMS)
    assert all(len(line.split()) > 3 for line in lines)


def test_unknown_claim_is_one_line_listing_the_claims(capsys):
    assert lab.main(["relu_sped", "dataset=synthetic"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "relu_sped" in err and all(n in err for n in lab.CLAIMS)


def test_claim_folder_with_results_is_refused(tmp_path):
    (tmp_path / "verdict.json").write_text("{}")
    with pytest.raises(UserError, match="already holds results"):
        lab.run_claim(lab.CLAIMS["saturation"], TINY, tmp_path)
