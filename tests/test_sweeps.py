"""Sweeps on Hydra's own launchers and the sweep summary (`deeprob compare` over the results: test_compare.py)."""
import json

from conftest import run_cli, run_dirs, summary

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
    result = run_cli("train", "-m", "activation=relu,tanh", "init=xavier,kaiming", *TINY,
                     "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", cwd=tmp_path)
    _grid_is_complete(tmp_path)
    assert "Joblib.Parallel(n_jobs=2" in result.stdout + result.stderr


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
