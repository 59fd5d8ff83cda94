"""Sweeps on Hydra's own launchers and the sweep summary (`deeprob compare` over the results: test_compare.py)."""
import itertools
import json
import os

import pytest
import torch

from conftest import run_cli, run_dirs, summary
from deeprob_cli.train import set_threads

TINY = ["dataset=synthetic", "dataset.num_train=320", "dataset.val_size=64", "model=mlp", "model.width=32",
        "trainer.epochs=1", "trainer.batch_size=64"]


def _grid_is_complete(tmp_path):
    runs = run_dirs(tmp_path / "runs" / "multirun")
    assert len(runs) == 4 and len({r.name for r in runs}) == 4
    combos = {(summary(r)["choices"]["activation"], summary(r)["choices"]["init"]) for r in runs}
    assert combos == {(a, i) for a in ("relu", "tanh") for i in ("xavier", "kaiming")}
    assert all(summary(r)["status"] == "completed" for r in runs)
    (sweep_json,) = (tmp_path / "runs" / "multirun").glob("*/*/sweep.json")
    jobs = json.loads(sweep_json.read_text())["jobs"]
    assert [j["status"] for j in jobs] == ["completed"] * 4 and "activation=relu" in jobs[0]["overrides"]
    return runs


def test_joblib_launcher_runs_a_2x2_grid_in_parallel(tmp_path):
    """Two worker processes run jobs side by side, and each job trains with cores ÷ 2 torch threads (trainer.threads
    null). joblib's workers inherit OMP_/MKL_NUM_THREADS where the shell sets them (torch's default thread count);
    here they are set to another number, so the share is deeprob's own. tests/sweep_probe.py records, per job."""
    cores = os.cpu_count() or 1
    share = max(1, cores // 2)
    result = run_cli("train", "-m", "activation=relu,tanh", "init=xavier,kaiming", *TINY,
                     "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                     "+hydra.callbacks.probe._target_=sweep_probe.Probe",
                     cwd=tmp_path, env=dict.fromkeys(("OMP_NUM_THREADS", "MKL_NUM_THREADS"), str(share + 2)))
    runs = _grid_is_complete(tmp_path)
    assert "Joblib.Parallel(n_jobs=2" in result.stdout + result.stderr
    probes = [json.loads((r / "probe.json").read_text()) for r in runs]
    assert [p["threads"] for p in probes] == [share] * 4
    assert len({p["pid"] for p in probes}) == 2 and os.getpid() not in {p["pid"] for p in probes}
    # each run's own clock: summary.json is written at its end, `seconds` after the run opened its folder
    spans = [((r / "summary.json").stat().st_mtime - summary(r)["seconds"], (r / "summary.json").stat().st_mtime)
             for r in runs]
    overlapping = [(a, b) for a, b in itertools.combinations(spans, 2) if a[0] < b[1] and b[0] < a[1]]
    assert overlapping, spans  # at least two runs trained at the same time


@pytest.mark.parametrize("threads, n_jobs, expected",
                         [(None, 2, "half"), (None, -1, 1), (3, 2, 3), (None, None, "unchanged")])
def test_threads_are_shared_among_a_launcher_jobs_unless_set(threads, n_jobs, expected):
    """trainer.threads wins; else cores ÷ n_jobs (n_jobs=-1: one job per core); no launcher: torch's own default."""
    before = torch.get_num_threads()
    cores = os.cpu_count() or 1
    try:
        torch.set_num_threads(7)
        set_threads(threads, n_jobs)
        got = torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
    assert got == {"half": max(1, cores // 2), "unchanged": 7}.get(expected, expected)


@pytest.mark.slow  # submitit starts a fresh interpreter per job; tests/test_slurm.py runs the real Slurm path
def test_submitit_local_launcher_runs_the_same_grid(tmp_path):
    run_cli("train", "-m", "activation=relu,tanh", "init=xavier,kaiming", *TINY, "hydra/launcher=submitit_local",
            cwd=tmp_path)
    _grid_is_complete(tmp_path)


def test_a_failing_job_does_not_stop_the_sweep_and_is_reported(tmp_path):
    run_cli("train", "-m", "dataset.subset=10,100000", *TINY, cwd=tmp_path)
    runs = run_dirs(tmp_path / "runs" / "multirun")
    assert [summary(r)["status"] for r in runs] == ["completed", "failed"]
    assert "dataset.subset: 100000 is larger" in summary(runs[1])["error"]
    (sweep_json,) = (tmp_path / "runs" / "multirun").glob("*/*/sweep.json")
    assert [j["status"] for j in json.loads(sweep_json.read_text())["jobs"]] == ["completed", "failed"]


def test_optuna_sweeper_maximizes_the_returned_val_accuracy(tmp_path):
    result = run_cli("train", "-m", "hydra/sweeper=optuna", "hydra.sweeper.direction=maximize",
                     "hydra.sweeper.n_trials=2", "hydra.sweeper.sampler.seed=0", "optim.lr=interval(0.01, 0.2)",
                     *TINY, cwd=tmp_path)
    runs = run_dirs(tmp_path / "runs" / "multirun")
    best = max(summary(r)["val_acc"] for r in runs)
    assert len(runs) == 2 and f"Best value: {best}" in result.stdout + result.stderr
