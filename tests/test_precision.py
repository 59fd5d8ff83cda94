"""The end-to-end checks under each numeric precision: trainer.precision=fp32 and trainer.precision=bf16.

    deeprob train trainer.precision=fp32 dataset=synthetic      # what `auto` means on a CPU without bf16
    deeprob train trainer.precision=bf16 dataset=synthetic      # what `auto` means on CUDA and AMX/AVX512-BF16 CPUs

Every other end-to-end test runs under `auto`, i.e. one of the two on any given machine; here both run. The one
`auto` already picks on this machine is marked slow (the default suite covers it elsewhere), so the default suite
covers both precisions wherever it runs.
"""
import json

import pytest
import torch

from conftest import FAST, read_events, run_cli, summary
from deeprob_cli import distributed
from deeprob_cli.speed import pick_precision, precision_name

AUTO = precision_name(pick_precision("auto", torch.device("cpu")))
PRECISIONS = [pytest.param(p, marks=[pytest.mark.slow] if p == AUTO else []) for p in ("fp32", "bf16")]
RUN = [*FAST, "trainer.epochs=2", "trainer.checkpoint_every=5", "log.hist_every=5"]
METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "test_acc", "steps", "epochs_completed")


@pytest.fixture(scope="module", params=PRECISIONS)
def trained(request, tmp_path_factory):
    """(precision, run folder) of one uninterrupted run under that precision."""
    cwd = tmp_path_factory.mktemp(request.param)
    run_cli("train", *RUN, f"trainer.precision={request.param}", "hydra.run.dir=ref", cwd=cwd,
            env={"DEEPROB_CACHE": str(cwd / "cache")})
    return request.param, cwd / "ref"


def _weights(run):
    return torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model"]


def test_run_trains_and_records_its_precision(trained):
    precision, run = trained
    s = summary(run)
    assert s["status"] == "completed" and s["precision"] == precision
    assert s["channels_last"] is (precision == "bf16")  # auto layout: NHWC for a convnet under bf16 on the CPU
    assert torch.isfinite(torch.tensor(s["train_loss"])) and s["val_acc"] > 0.5  # 4 separable classes: chance 0.25
    losses = [v for _, v in read_events(run)[0]["train/loss"]]
    assert len(losses) == s["steps"] and sum(losses[-3:]) < sum(losses[:3])  # it learned
    assert all(w.dtype == torch.float32 for w in _weights(run).values() if w.is_floating_point())  # master weights


def test_eval_equals_the_summary(trained):
    """`deeprob eval` restores the run under its own precision and layout: the very numbers training reported."""
    precision, run = trained
    cwd = run.parent
    run_cli("eval", run, cwd=cwd)
    val = json.loads((run / "eval.json").read_text())
    run_cli("eval", run, "split=test", cwd=cwd)
    test = json.loads((run / "eval.json").read_text())
    s = summary(run)
    assert (val["accuracy"], val["loss"]) == (s["val_acc"], s["val_loss"]) and test["accuracy"] == s["test_acc"]


def test_an_interrupted_run_resumes_to_the_uninterrupted_one(trained, tmp_path, monkeypatch):
    """A stop signal at step 7 (mid-epoch, between checkpoints), then resume: the same metrics, weights and
    per-step losses as the run that was never stopped."""
    precision, reference = trained
    steps = []

    def signal_at_step_7(stop):  # what a SIGTERM delivered during step 7 looks like to the loop
        steps.append(len(steps) + 1)
        if len(steps) == 7:
            stop.signal, stop.code = "SIGTERM", 143

    with monkeypatch.context() as patch:
        patch.setattr(distributed, "share_stop", signal_at_step_7)
        stopped = run_cli("train", *RUN, f"trainer.precision={precision}", "hydra.run.dir=run", cwd=tmp_path,
                          check=False)
    assert stopped.returncode == 143, stopped.stderr
    assert summary(tmp_path / "run")["status"] == "interrupted" and summary(tmp_path / "run")["steps"] == 7
    run_cli("train", "resume=run", cwd=tmp_path)
    a, b = summary(tmp_path / "run"), summary(reference)
    assert a["status"] == "completed" and a["precision"] == precision
    assert {k: a[k] for k in METRICS} == {k: b[k] for k in METRICS}
    wa, wb = _weights(tmp_path / "run"), _weights(reference)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert read_events(tmp_path / "run")[0]["train/loss"] == read_events(reference)[0]["train/loss"]
