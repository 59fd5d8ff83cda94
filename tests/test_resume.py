"""Interrupted runs resume bit for bit; divergence stops a run cleanly; signals leave a valid checkpoint."""
import math
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import REPO, event_folders, run_cli, run_dirs, summary

RUN = ["dataset=synthetic", "dataset.num_train=1280", "model.widths=[8,16]", "trainer.epochs=3",
       "trainer.batch_size=32", "trainer.checkpoint_every=4", "log.hist_every=5", "augment=[flip,crop]"]
METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "test_acc", "steps", "epochs_completed")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("reference")
    run_cli("train", *RUN, "hydra.run.dir=ref", cwd=cwd, env={"DEEPROB_CACHE": str(cwd / "cache")})
    return cwd / "ref"


def _weights(run, name="last.pt"):
    return torch.load(run / "checkpoints" / name, weights_only=True)["model"]


def events(run):
    """Everything TensorBoard shows of a run's numbers: every scalar tag's (step, value) list and every histogram
    tag's (step, count, sum) list, in the order TensorBoard reads them after its purges."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    scalars, hists = {}, {}
    for prefix, folder in event_folders(run):  # the run's own writer and one per split (train/loss, val/acc)
        acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "histograms": 0, "tensors": 0})
        acc.Reload()
        tags = acc.Tags()
        scalars.update({prefix + t: [(e.step, e.value) for e in acc.Scalars(t)] for t in tags["scalars"]})
        hists.update({prefix + t: [(e.step, e.histogram_value.num, e.histogram_value.sum) for e in acc.Histograms(t)]
                      for t in tags["histograms"]})
    return scalars, hists


def _same_as_reference(run, reference):
    """Bit for bit: metrics, weights, and every TensorBoard value at every step exactly once."""
    a, b = summary(run), summary(reference)
    assert a["status"] == "completed" and {k: a[k] for k in METRICS} == {k: b[k] for k in METRICS}
    wa, wb = _weights(run), _weights(reference)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    scalars, hists = events(run)
    assert [s for s, _ in scalars["train/loss"]] == list(range(a["steps"]))  # no step twice, none missing
    ref_scalars, ref_hists = events(reference)
    assert scalars == ref_scalars and hists == ref_hists


def _start(cwd, *args, stall_at=None):
    """`deeprob train ARGS` in a fresh interpreter; with stall_at=N its N-th write of checkpoints/last.pt stops
    halfway (half the bytes in the temporary file) until the test kills it: a kill during a checkpoint write."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "HYDRA_FULL_ERROR": "0"}
    if stall_at is None:
        command = [sys.executable, "-m", "deeprob_cli", "train", *args]
    else:
        command = [sys.executable, "-c", STALLING, str(stall_at), "train", *args]
    return subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


STALLING = """
import os, sys, time
import deeprob_cli.checkpoint as c
real, writes, at = c.atomic_write, [0], int(sys.argv.pop(1))
def stalling(path, data):
    if path.name == "last.pt":
        writes[0] += 1
        if writes[0] == at:
            with open(c.temp_path(path), "wb") as f:
                f.write(bytes(data)[: len(data) // 2])
            open("stalled", "w").close()  # beside the run folder: the test kills now
            time.sleep(600)
    return real(path, data)
c.atomic_write = stalling
from deeprob_cli.__main__ import main
sys.argv[0] = "deeprob"
sys.exit(main())
"""


def _saved_step(run):
    try:
        return torch.load(run / "checkpoints" / "last.pt", weights_only=True)["progress"]["step"]
    except Exception:  # not there yet
        return -1


def _wait(proc, condition, timeout=180):
    """Until condition() holds; fails (never skips) when the run ends or stalls first."""
    deadline = time.time() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended (exit {proc.returncode}) before the awaited point:\n"
                                 f"{proc.stderr.read()}")
        assert time.time() < deadline, "the run did not reach the awaited point in time"
        time.sleep(0.01)


def _kill_9(proc):
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL  # it was still running: the kill, not the end, stopped it


def kill_trial(tmp_path, reference, mode, target):
    """One fault: kill -9 right after the checkpoint of step `target` exists ("step"), or in the middle of the
    `target`-th write of last.pt ("write"); then resume and compare bit for bit with the uninterrupted run."""
    run = tmp_path / "run"
    proc = _start(tmp_path, *RUN, "hydra.run.dir=run", stall_at=target if mode == "write" else None)
    if mode == "step":
        _wait(proc, lambda: _saved_step(run) >= target)
    else:
        _wait(proc, lambda: (tmp_path / "stalled").exists())
    _kill_9(proc)
    saved = _saved_step(run)
    assert 0 < saved < summary(reference)["steps"]
    if mode == "write":  # the torn write never replaced the previous checkpoint
        assert saved == WRITES[target - 2] if target > 1 else True
    run_cli("train", "resume=run", cwd=tmp_path)
    assert not list(run.rglob(".*.deeprob-tmp*"))  # the killed process's temporary file is gone
    _same_as_reference(run, reference)


# steps of the successive writes of last.pt in RUN (32 steps an epoch, a checkpoint every 4 steps; at the epoch's
# last step only the epoch-end one): writes 8, 16 and 24 are the epoch ends
WRITES = [s for e in range(3) for s in [*range(e * 32 + 4, e * 32 + 32, 4), e * 32 + 32]]
DEFAULT_KILLS = [("write", 8)]  # the default suite: a kill mid-write of an epoch-end checkpoint; the rest: slow
CAMPAIGN = ([("step", t) for t in random.Random(14).sample(sorted(set(range(1, 86)) - {32, 64}), 18)]
            + [("step", 32), ("step", 64)]
            + [("write", n) for n in (2, 8, 11, 16, 19, 23)])


@pytest.mark.parametrize("mode, target", DEFAULT_KILLS, ids=[f"{m}-{t}" for m, t in DEFAULT_KILLS])
def test_kill_9_then_resume_equals_the_uninterrupted_run(tmp_path, reference, mode, target):
    kill_trial(tmp_path, reference, mode, target)


@pytest.mark.slow
@pytest.mark.parametrize("mode, target", CAMPAIGN, ids=[f"{m}-{t}" for m, t in CAMPAIGN])
def test_kill_9_campaign(tmp_path, reference, mode, target):
    """The slow suite's campaign: kill -9 at 20 steps (both epoch ends among them) and in 6 checkpoint writes
    (two of them epoch-end writes, after the epoch's values went to TensorBoard)."""
    kill_trial(tmp_path, reference, mode, target)


def test_sigterm_writes_a_checkpoint_and_resume_refuses_changes_and_accepts_allowed_ones(tmp_path, reference):
    proc = _start(tmp_path, *RUN, "hydra.run.dir=run")
    _wait(proc, lambda: _saved_step(tmp_path / "run") >= 1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM
    s = summary(tmp_path / "run")
    assert s["status"] == "interrupted" and s["signal"] == "SIGTERM"
    assert s["resume"] == "deeprob train resume=" + str((tmp_path / "run").resolve())
    assert "checkpoint saved; continue with: deeprob train resume=" in err and "Traceback" not in err
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert state["progress"]["step"] == s["steps"]  # the checkpoint is the interrupted step
    # an interrupted run, so the refusal comes from the comparison with its checkpoint, not "already completed"
    before = digest_but_log(tmp_path / "run")
    refused = run_cli("train", "resume=run", "optim.lr=0.5", cwd=tmp_path, check=False)
    assert refused.returncode == 2 and "resume: optim.lr=0.5 differs from the run's" in refused.stderr
    refused = run_cli("train", "resume=run", "trainer.threads=2", cwd=tmp_path, check=False)
    assert refused.returncode == 2 and "resume: trainer.threads=2 differs from the run's None (torch splits its " \
        "CPU reductions by thread count, so the result would no longer be bit-identical" in refused.stderr
    refused = run_cli("train", "resume=run", "model=mlp", cwd=tmp_path, check=False)
    assert refused.returncode == 2 and refused.stderr.strip() == (
        "deeprob train: error: resume: model=mlp chooses another option; a resumed run keeps its configuration "
        "(it may change: log.hist_every, log.progress, resume, trainer.device, trainer.eval_batch_size); start a "
        "new run to change it")
    assert digest_but_log(tmp_path / "run") == before  # refusals touch nothing (train.log records them)
    run_cli("train", "resume=run", "trainer.device=cpu", "log.progress=false", cwd=tmp_path)  # allowed changes
    _same_as_reference(tmp_path / "run", reference)
    assert summary(tmp_path / "run")["changed_on_resume"] == {"log.progress": ["auto", False],
                                                              "trainer.device": ["auto", "cpu"]}


def digest_but_log(folder):
    import hashlib

    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != "train.log"):
        h.update(str(path.relative_to(folder)).encode() + path.read_bytes())
    return h.hexdigest()


def test_resume_refuses_finished_runs_and_folders_that_hold_no_run(tmp_path, reference):
    result = run_cli("train", f"resume={reference}", "optim.lr=0.5", cwd=tmp_path, check=False)
    assert result.returncode == 2 and "already completed" in result.stderr
    result = run_cli("train", f"resume={tmp_path}", cwd=tmp_path, check=False)
    assert result.returncode == 2 and "is not a run folder" in result.stderr


def test_best_checkpoint_holds_the_epoch_of_the_best_val_accuracy(tmp_path):
    """A run whose val accuracy peaks before its last epoch (constant lr 0.2: 0.27, 0.77, 0.99, 0.90): best.pt is
    epoch 3's model, and its weights score the best val accuracy again."""
    from deeprob_cli.data import load_data
    from deeprob_cli.evaluate import evaluate, restore
    from omegaconf import OmegaConf

    run_cli("train", "dataset=synthetic", "dataset.num_train=512", "dataset.val_size=128", "model.widths=[8,16]",
            "trainer.epochs=4", "trainer.batch_size=64", "log.hist_every=0", "schedule=constant", "optim.lr=0.2",
            "hydra.run.dir=run", cwd=tmp_path)
    val = [v for _, v in events(tmp_path / "run")[0]["val/acc"]]
    best_epoch = max(range(len(val)), key=val.__getitem__) + 1
    assert best_epoch < len(val)  # the premise: the best epoch is not the last
    state = torch.load(tmp_path / "run" / "checkpoints" / "best.pt", weights_only=True)
    assert state["progress"]["epoch"] - 1 == best_epoch and state["progress"]["best_val"] == max(val)
    cfg = OmegaConf.create(state["config"])
    model, preprocess = restore(state, cfg, torch.device("cpu"))
    data = load_data(cfg.dataset)
    assert evaluate(model, data.val, preprocess, torch.device("cpu"))[1] == pytest.approx(max(val), abs=1e-6)


def test_huge_learning_rate_diverges_within_the_first_epoch(tmp_path):
    result = run_cli("train", *RUN, "optim.lr=1e6", "hydra.run.dir=run", cwd=tmp_path, check=False)
    assert result.returncode == 3 and "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith(("deeprob train: diverged: loss became", "deeprob train: diverged: a weight became"))
    assert "optim.lr" in line and "init=" in line  # (batch-norm statistics may turn infinite before the loss)
    s = summary(tmp_path / "run")
    assert s["status"] == "diverged" and s["step"] < 32 and s["epochs_completed"] == 0
    assert isinstance(s["last_finite_loss"], float) and math.isfinite(s["last_finite_loss"])


def test_a_diverging_job_does_not_stop_its_sweep(tmp_path):
    run_cli("train", "-m", "optim.lr=1e6,0.05", "dataset=synthetic", "model=mlp", "trainer.epochs=1", cwd=tmp_path)
    runs = run_dirs(tmp_path / "runs" / "multirun")
    assert [summary(r)["status"] for r in runs] == ["diverged", "completed"]


def test_summary_and_checkpoint_record_provenance(reference):
    s = summary(reference)
    assert s["seed"] == 0 and s["torch"] == torch.__version__ and s["python"].count(".") == 2
    assert s["git_commit"] is None or len(s["git_commit"].split("+")[0]) == 40
    assert torch.load(reference / "checkpoints" / "last.pt", weights_only=True)["provenance"]["torch"] == torch.__version__


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1], ids=lambda s: s.name)
def test_a_closed_terminal_ctrl_backslash_or_usr1_stops_like_ctrl_c(tmp_path, sig):
    """SIGHUP, SIGQUIT and SIGUSR1 end a run as SIGTERM does: the step finishes, a checkpoint and summary.json
    say where it stopped, exit 128+N (their default actions would end it with nothing written)."""
    proc = _start(tmp_path, *RUN, "hydra.run.dir=run")
    _wait(proc, lambda: _saved_step(tmp_path / "run") >= 1)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, err
    s = summary(tmp_path / "run")
    assert s["status"] == "interrupted" and s["signal"] == sig.name and "Traceback" not in err
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert state["progress"]["step"] == s["steps"]
