"""Sweeps on Hydra's own launchers, the sweep summary, and `deeprob compare` over the results."""
import csv
import io
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


def test_compare_tables_what_differs_sorted_by_val_acc_and_draws_curves(tmp_path):
    run_cli("train", "-m", "activation=relu,tanh", "optim.lr=0.05,0.001", *TINY, cwd=tmp_path)
    runs = run_dirs(tmp_path / "runs" / "multirun")
    # a run that stopped early must be listed with its status, not dropped
    broken = summary(runs[3])
    broken["status"] = "diverged"
    broken["val_acc"] = None
    (runs[3] / "summary.json").write_text(json.dumps(broken))
    sweep = runs[0].parent
    out = run_cli("compare", sweep, cwd=tmp_path).stdout.splitlines()
    assert out[0].startswith("| run | activation | optim.lr | status |")
    assert "init" not in out[0] and "trainer.epochs" not in out[0]  # same in every run: not a column
    assert len(out) == 2 + 4
    accs = [summary(r)["val_acc"] for r in runs[:3]]
    listed = [float(line.split("|")[6]) for line in out[2:5]]  # the val_acc column
    assert listed == sorted(listed, reverse=True) and sorted(listed) == sorted(round(a, 4) for a in accs)
    assert "diverged" in out[5] and str(runs[3]) in out[5]
    assert (sweep / "compare.png").stat().st_size > 10_000
    rows = list(csv.reader(io.StringIO(run_cli("compare", sweep, "--csv", cwd=tmp_path).stdout)))
    assert rows[0][:4] == ["run", "activation", "optim.lr", "status"] and len(rows) == 5


def test_compare_without_runs_is_one_line(tmp_path):
    result = run_cli("compare", tmp_path, cwd=tmp_path, check=False)
    assert result.returncode == 2 and "no run folders" in result.stderr and "Traceback" not in result.stderr


def test_optuna_sweeper_maximizes_the_returned_val_accuracy(tmp_path):
    result = run_cli("train", "-m", "hydra/sweeper=optuna", "hydra.sweeper.direction=maximize",
                     "hydra.sweeper.n_trials=2", "hydra.sweeper.sampler.seed=0", "optim.lr=interval(0.01, 0.2)",
                     *TINY, cwd=tmp_path)
    runs = run_dirs(tmp_path / "runs" / "multirun")
    best = max(summary(r)["val_acc"] for r in runs)
    assert len(runs) == 2 and f"Best value: {best}" in result.stdout + result.stderr
