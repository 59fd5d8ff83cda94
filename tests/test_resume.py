"""Interrupted runs resume bit for bit; divergence stops a run cleanly; signals leave a valid checkpoint."""
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import REPO, read_events, run_cli, run_dirs, summary

RUN = ["dataset=synthetic", "dataset.num_train=1280", "model.widths=[8,16]", "trainer.epochs=3",
       "trainer.batch_size=32", "trainer.checkpoint_every=4", "log.hist_every=5", "augment=[flip,crop]"]
METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "test_acc", "steps", "epochs_completed")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("reference")
    run_cli("train", *RUN, "hydra.run.dir=ref", cwd=cwd, env={"DEEPROB_CACHE": str(cwd / "cache")})
    return cwd / "ref"


def _weights(run):
    return torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model"]


def _same_as_reference(run, reference):
    a, b = summary(run), summary(reference)
    assert {k: a[k] for k in METRICS} == {k: b[k] for k in METRICS}
    wa, wb = _weights(run), _weights(reference)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    scalars, _ = read_events(run)
    assert [s for s, _ in scalars["train/loss"]] == list(range(a["steps"]))  # no step twice after the resume
    ref_scalars, _ = read_events(reference)
    assert scalars["train/loss"] == ref_scalars["train/loss"] and scalars["val/acc"] == ref_scalars["val/acc"]


def _start(cwd, *args):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "deeprob_cli", "train", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_checkpoint(proc, run, timeout=120):
    deadline = time.time() + timeout
    while not (run / "checkpoints" / "last.pt").exists():
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read() if proc.poll() is not None else "slow"
        time.sleep(0.02)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kill_9_at_a_random_step_then_resume_equals_the_uninterrupted_run(tmp_path, reference, seed):
    proc = _start(tmp_path, *RUN, "hydra.run.dir=run")
    _wait_for_checkpoint(proc, tmp_path / "run")
    time.sleep(random.Random(seed).uniform(0.0, 1.5))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)["progress"]["step"]
    if proc.returncode != -signal.SIGKILL or saved >= summary(reference)["steps"]:
        pytest.skip("the run finished before the kill arrived")
    run_cli("train", "resume=run", cwd=tmp_path)
    _same_as_reference(tmp_path / "run", reference)


def test_sigterm_writes_a_checkpoint_marks_interrupted_and_resume_completes(tmp_path, reference):
    proc = _start(tmp_path, *RUN, "hydra.run.dir=run")
    _wait_for_checkpoint(proc, tmp_path / "run")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM
    s = summary(tmp_path / "run")
    assert s["status"] == "interrupted" and s["signal"] == "SIGTERM"
    assert s["resume"] == "deeprob train resume=" + str((tmp_path / "run").resolve())
    assert "checkpoint saved; continue with: deeprob train resume=" in err and "Traceback" not in err
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert state["progress"]["step"] == s["steps"]  # the checkpoint is the interrupted step
    run_cli("train", "resume=run", cwd=tmp_path)
    _same_as_reference(tmp_path / "run", reference)


def test_resume_refuses_a_changed_configuration_and_finished_runs(tmp_path, reference):
    result = run_cli("train", f"resume={reference}", "optim.lr=0.5", cwd=tmp_path, check=False)
    assert result.returncode == 2 and "already completed" in result.stderr
    result = run_cli("train", f"resume={tmp_path}", cwd=tmp_path, check=False)
    assert result.returncode == 2 and "is not a run folder" in result.stderr


def test_best_checkpoint_is_kept_beside_last(reference):
    best = torch.load(reference / "checkpoints" / "best.pt", weights_only=True)
    assert best["progress"]["best_val"] == max(v for _, v in read_events(reference)[0]["val/acc"])


def test_huge_learning_rate_diverges_within_the_first_epoch(tmp_path):
    result = run_cli("train", *RUN, "optim.lr=1e6", "hydra.run.dir=run", cwd=tmp_path, check=False)
    assert result.returncode == 3 and "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("deeprob train: diverged: loss became") and "optim.lr" in line and "init=" in line
    s = summary(tmp_path / "run")
    assert s["status"] == "diverged" and s["step"] < 40 and s["epochs_completed"] == 0
    assert s["last_finite_loss"] is None or s["last_finite_loss"] == s["last_finite_loss"]  # a number, not NaN


def test_a_diverging_job_does_not_stop_its_sweep(tmp_path):
    run_cli("train", "-m", "optim.lr=1e6,0.05", "dataset=synthetic", "model=mlp", "trainer.epochs=1", cwd=tmp_path)
    runs = run_dirs(tmp_path / "runs" / "multirun")
    assert [summary(r)["status"] for r in runs] == ["diverged", "completed"]


def test_summary_and_checkpoint_record_provenance(reference):
    s = summary(reference)
    assert s["seed"] == 0 and s["torch"] == torch.__version__ and s["python"].count(".") == 2
    assert s["git_commit"] is None or len(s["git_commit"].split("+")[0]) == 40
    assert torch.load(reference / "checkpoints" / "last.pt", weights_only=True)["provenance"]["torch"] == torch.__version__
