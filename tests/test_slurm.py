"""deeprob on Slurm: `make test-slurm` (pytest -m slurm tests/test_slurm.py) starts a real single-node Slurm
with tests/slurm/cluster.sh (slurmctld, slurmd and munged from apt, stopped by their PIDs afterwards) and checks
a sweep through submitit's Slurm executor, a job requeued mid-training (scontrol requeue, and submitit's own
pre-emption/time-limit signal) against an uninterrupted one, and a 2-task DDP job. Where Slurm cannot start, those
tests skip with the reason. The tests at the top need no cluster: Slurm's environment mapped to DDP ranks, the
restart detection, and the sweep's records."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from conftest import REPO, read_events, run_cli, run_dirs, summary
from deeprob_cli import distributed, sweep
from deeprob_cli.checkpoint import load_checkpoint
from deeprob_cli.evaluate import restore

CLUSTER = REPO / "tests" / "slurm" / "cluster.sh"
TINY = ["dataset=synthetic", "dataset.num_train=320", "dataset.val_size=64", "model=mlp", "model.width=32",
        "trainer.epochs=1", "trainer.batch_size=64"]
LAUNCHER = ["hydra/launcher=slurm", "hydra.launcher.partition=debug", "hydra.launcher.cpus_per_task=1"]
# long enough (16 epochs × 12 steps, ≈0.4 s per epoch) that a requeue after the first checkpoint lands mid-run
LONG = ["dataset=synthetic", "model.widths=[8,16]", "trainer.epochs=16", "trainer.batch_size=64",
        "trainer.threads=1", "log.hist_every=5"]
DDP = ["dataset=synthetic", "trainer.epochs=1", "trainer.batch_size=32", "model.widths=[8,16]",
       "dataset.num_train=768", "optim.lr=0.05", "schedule=constant", "log.hist_every=2"]


# ---- without a cluster ------------------------------------------------------------------------------------

def unset(monkeypatch, *names):
    """Remove variables for this test only: from_slurm() sets them through os.environ, and monkeypatch restores
    (or removes again) only what it recorded — so record each one first."""
    for name in names:
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)


def test_slurm_tasks_become_ddp_ranks(monkeypatch):
    unset(monkeypatch, *distributed.ENV, "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
    slurm = {"SLURM_STEP_ID": "0", "SLURM_PROCID": "3", "SLURM_LOCALID": "1", "SLURM_STEP_NUM_TASKS": "4",
             "SLURM_NTASKS": "4", "SLURM_STEP_TASKS_PER_NODE": "2(x2)", "SLURM_JOB_ID": "1234",
             "SLURM_STEP_NODELIST": "gpu[07-08]", "PATH": ""}  # no scontrol on PATH: the parser's answer
    for name, value in slurm.items():
        monkeypatch.setenv(name, value)
    assert distributed.from_slurm() and distributed.launched()
    assert [os.environ[k] for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR")] == \
        ["4", "3", "1", "2", "gpu07"]
    assert os.environ["MASTER_PORT"] == str(20000 + (1234 * 16 + 0) % 40000)  # the same on every task
    assert distributed.threads_per_process() == 2
    assert not distributed.from_slurm()  # once mapped, torchrun's variables rule


def test_one_task_steps_and_batch_scripts_stay_single_process(monkeypatch):
    unset(monkeypatch, *distributed.ENV, "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "SLURM_STEP_NUM_TASKS",
          "SLURM_STEP_ID")  # the batch script itself: not a step of tasks
    monkeypatch.setenv("SLURM_PROCID", "0")
    monkeypatch.setenv("SLURM_NTASKS", "4")
    assert not distributed.from_slurm() and not distributed.launched()
    monkeypatch.setenv("SLURM_STEP_ID", "0")
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "1")  # srun with one task inside a 4-task allocation
    assert not distributed.from_slurm() and not distributed.launched()


@pytest.mark.parametrize("nodelist, first", [("node1", "node1"), ("a[3-5,9],b2", "a3"), ("c[012-013]", "c012"),
                                             ("", "127.0.0.1")])
def test_first_host_of_a_node_list(monkeypatch, nodelist, first):
    monkeypatch.setenv("PATH", "")  # the fallback parser (scontrol gives the same answers)
    assert distributed.first_host(nodelist) == first


def test_a_restarted_job_is_recognised(monkeypatch):
    unset(monkeypatch, "SLURM_RESTART_COUNT")
    assert not distributed.requeued()
    monkeypatch.setenv("SLURM_RESTART_COUNT", "0")
    assert not distributed.requeued()
    monkeypatch.setenv("SLURM_RESTART_COUNT", "2")
    assert distributed.requeued()


def test_a_job_slurm_ended_keeps_an_interrupted_status_and_gains_the_reason(tmp_path):
    interrupted, lost, done = tmp_path / "0", tmp_path / "1", tmp_path / "2"
    interrupted.mkdir()
    (interrupted / "summary.json").write_text(json.dumps({"status": "interrupted", "resume": "deeprob train ..."}))
    done.mkdir()
    (done / "summary.json").write_text(json.dumps({"status": "completed", "val_acc": 0.5}))
    for folder in (interrupted, lost, done):
        sweep.record_end(folder, "Slurm job 7_0 ended (CANCELLED) without a result")
    assert json.loads((interrupted / "summary.json").read_text()) == {
        "status": "interrupted", "resume": "deeprob train ...", "error": "Slurm job 7_0 ended (CANCELLED) without a result"}
    assert json.loads((lost / "summary.json").read_text())["status"] == "failed"
    assert json.loads((done / "summary.json").read_text()) == {"status": "completed", "val_acc": 0.5}


def test_sweep_json_lists_slurm_job_and_restarts(tmp_path, monkeypatch):
    for n, restarts in ((0, "2"), (1, None)):
        job = tmp_path / str(n)
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "overrides.yaml").write_text(f"- trainer.seed={n}\n")
        (job / "summary.json").write_text(json.dumps({"status": "completed", "val_acc": 0.25 * n}))
        if restarts is not None:
            monkeypatch.setenv("SLURM_RESTART_COUNT", restarts)
            sweep.record_start(job, f"9_{n}")
    jobs = sweep.collect(tmp_path)
    assert [(j["job"], j.get("slurm_job"), j.get("restarts")) for j in jobs] == [("0", "9_0", 2), ("1", None, None)]


# ---- on a real single-node Slurm ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cluster():
    """SLURM_CONF of a running single-node cluster; skips with cluster.sh's reason where Slurm cannot start."""
    folder = Path(tempfile.mkdtemp(prefix="deeprob-slurm-"))  # short: munge's socket path must stay < 108 bytes
    started = subprocess.run(["bash", str(CLUSTER), "start", str(folder)], capture_output=True, text=True,
                             timeout=900)
    if started.returncode == 3:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.skip(started.stderr.strip().splitlines()[-1])
    assert started.returncode == 0, f"cluster.sh start exited {started.returncode}:\n{started.stderr}"
    try:
        yield str(folder / "slurm.conf")
    finally:
        subprocess.run(["bash", str(CLUSTER), "stop", str(folder)], timeout=120)
        shutil.rmtree(folder, ignore_errors=True)


def slurm_env(conf: str) -> dict:
    return {"SLURM_CONF": conf, "OMP_NUM_THREADS": "1"}


def slurm(*command, conf: str) -> str:
    return subprocess.run(command, check=True, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "SLURM_CONF": conf}).stdout.strip()


def wait_for(predicate, what: str, timeout: float = 240, every: float = 0.1):
    """Poll until predicate() is true (never a fixed sleep); fail naming what did not happen."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def job_folder(sweep_dir: Path, name: str):
    """The sweep's job folder named `name` (deeprob names jobs by their swept values; true may read True)."""
    found = [d for d in sweep_dir.iterdir() if d.name.lower() == name.lower()] if sweep_dir.is_dir() else []
    return found[0] if found else None


def checkpointed(sweep_dir: Path, name: str):
    """The job folder once it holds its first checkpoint, else None."""
    folder = job_folder(sweep_dir, name)
    return folder if folder is not None and (folder / "checkpoints" / "last.pt").is_file() else None


def restart_now(job_id: str, conf: str):
    """Once Slurm has put the requeued job back in the queue, let it start at once: Slurm holds a requeued job
    for about two minutes (its eligible time), which is only waiting here."""
    wait_for(lambda: slurm("squeue", "-h", "-j", job_id, "-o", "%T", conf=conf) == "PENDING",
             f"job {job_id} to be requeued")
    slurm("scontrol", "update", f"jobid={job_id}", "StartTime=now", conf=conf)


@pytest.mark.slow
@pytest.mark.slurm
def test_a_2x2_sweep_completes_on_slurm_and_polls_quietly(cluster, tmp_path):
    result = run_cli("train", "-m", "activation=relu,tanh", "init=xavier,kaiming", *TINY, *LAUNCHER, cwd=tmp_path,
                     env=slurm_env(cluster))
    runs = run_dirs(tmp_path / "runs" / "multirun")
    assert len(runs) == 4 and all(summary(r)["status"] == "completed" for r in runs)
    combos = {(summary(r)["choices"]["activation"], summary(r)["choices"]["init"]) for r in runs}
    assert combos == {(a, i) for a in ("relu", "tanh") for i in ("xavier", "kaiming")}
    (sweep_json,) = (tmp_path / "runs" / "multirun").glob("*/*/sweep.json")
    jobs = json.loads(sweep_json.read_text())["jobs"]
    assert [(j["status"], j["restarts"]) for j in jobs] == [("completed", 0)] * 4
    assert len({j["slurm_job"] for j in jobs}) == 4 and all("_" in j["slurm_job"] for j in jobs)  # one job array
    output = result.stdout + result.stderr
    assert "sacct" not in output.replace("Slurm accounting is off (sacct:", "", 1)  # said once, then quiet
    assert "WARNING" not in output and "status may be inaccurate" not in output


@pytest.mark.slow
@pytest.mark.slurm
def test_requeued_jobs_finish_identical_to_an_uninterrupted_one(cluster, tmp_path):
    """Three jobs that compute the same numbers (they differ in log.progress alone, which names their folders):
    the first is requeued as a pre-empting scheduler does (scontrol requeue: SIGTERM, restart), the second gets
    submitit's pre-emption/time-limit signal (USR2: checkpoint, resubmit, requeue), the third runs through."""
    out = tmp_path / "sweep"
    args = [sys.executable, "-m", "deeprob_cli", "train", "-m", "log.progress=auto,true,false", *LONG, *LAUNCHER,
            f"hydra.sweep.dir={out}"]
    names = [f"log.progress={v}" for v in ("auto", "true", "false")]
    env = {**os.environ, "PYTHONPATH": str(REPO), **slurm_env(cluster)}
    with subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True) as driver:
        for n, interrupt in ((0, ["scontrol", "requeue"]), (1, ["scancel", "--signal=USR2"])):
            folder = wait_for(lambda: checkpointed(out, names[n]), f"job {n}'s first checkpoint")
            job_id = json.loads((folder / sweep.SLURM_RECORD).read_text())["job_id"]
            slurm(*interrupt, job_id, conf=cluster)
            restart_now(job_id, cluster)
        output, _ = driver.communicate(timeout=400)
    assert driver.returncode == 0, output
    jobs = json.loads((out / "sweep.json").read_text())["jobs"]
    assert [(j["status"], j["restarts"]) for j in jobs] == [("completed", 1), ("completed", 1), ("completed", 0)]
    folders = [job_folder(out, name) for name in names]
    assert [j["job"] for j in jobs] == [f.name for f in folders]  # each restart continued in its own folder
    reference = folders[2]
    ref_state = load_checkpoint(reference / "checkpoints" / "last.pt")["model"]
    ref_scalars, _ = read_events(reference)
    keys = ("steps", "epochs_completed", "train_loss", "train_acc", "val_loss", "val_acc", "test_acc")
    for n in (0, 1):
        job = folders[n]
        resumed = [line for line in (job / "train.log").read_text().splitlines() if " resumed " in line]
        assert len(resumed) == 1, resumed  # it really stopped mid-run and continued once
        state = load_checkpoint(job / "checkpoints" / "last.pt")["model"]
        assert state.keys() == ref_state.keys() and all(torch.equal(state[k], ref_state[k]) for k in state)
        assert {k: summary(job)[k] for k in keys} == {k: summary(reference)[k] for k in keys}
        scalars, _ = read_events(job)
        for tag, points in scalars.items():
            steps = [s for s, _ in points]
            assert len(steps) == len(set(steps)), f"job {n}: {tag} has a step twice"
        assert scalars == ref_scalars  # every tag, step and value, once each
        print(f"job {n}: {resumed[0].split(' - ')[-1]}; final weights and metrics identical to job 2; "
              f"{len(scalars)} scalar tags, train/loss at {len(scalars['train/loss'])} steps, each once")
    assert len(ref_scalars["train/loss"]) == summary(reference)["steps"] == 16 * 12
    log_1 = out / ".submitit" / jobs[1]["slurm_job"] / f"{jobs[1]['slurm_job']}_0_log.err"  # submitit's job log
    assert "interrupted: SIGUSR2 at step" in log_1.read_text()  # deeprob checkpointed before submitit requeued


@pytest.mark.slow
@pytest.mark.slurm
def test_a_two_task_job_trains_one_ddp_run(cluster, tmp_path):
    """tasks_per_node=2 through the launcher, and srun --ntasks=2 deeprob train: ranks from Slurm, one run
    folder written by rank 0, identical replicas, and the same weights by both routes."""
    run_cli("train", "-m", *DDP, *LAUNCHER, "hydra.launcher.tasks_per_node=2", "hydra.sweep.dir=sweep",
            cwd=tmp_path, env=slurm_env(cluster))
    srun = subprocess.run(["srun", "--ntasks=2", "--cpus-per-task=1", sys.executable, "-m", "deeprob_cli", "train",
                           *DDP, "hydra.run.dir=srun"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO), **slurm_env(cluster)})
    assert srun.returncode == 0, srun.stderr
    digests = []
    for run in (tmp_path / "sweep" / "0", tmp_path / "srun"):
        s = summary(run)
        assert s["status"] == "completed" and s["world_size"] == 2 and s["effective_batch_size"] == 64
        assert len(s["weights_sha256"]) == 2 and s["weights_sha256"][0] == s["weights_sha256"][1]
        state = load_checkpoint(run / "checkpoints" / "last.pt")
        model, _ = restore(state, OmegaConf.create(state["config"]), torch.device("cpu"))
        assert distributed.parameter_digest(model) == s["weights_sha256"][0]  # rank 0's checkpoint: same bytes
        assert len(list(run.glob("events.out.tfevents.*"))) == 1
        assert (run / "train.log").read_text().count("DDP: 2 processes (gloo)") == 1  # rank 1 did not write it
        digests.append(s["weights_sha256"][0])
    assert digests[0] == digests[1]
    print("DDP weight digests (launcher, srun):", digests)


@pytest.mark.slow
@pytest.mark.slurm
def test_a_requeued_two_task_job_finishes_identical_to_an_uninterrupted_one(cluster, tmp_path):
    out = tmp_path / "sweep"
    args = [sys.executable, "-m", "deeprob_cli", "train", "-m", "log.progress=auto,false", *LONG,
            "trainer.batch_size=32", *LAUNCHER, "hydra.launcher.tasks_per_node=2", f"hydra.sweep.dir={out}"]

    env = {**os.environ, "PYTHONPATH": str(REPO), **slurm_env(cluster)}
    with subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True) as driver:
        first = wait_for(lambda: checkpointed(out, "log.progress=auto"), "job 0's first checkpoint")
        job_id = json.loads((first / sweep.SLURM_RECORD).read_text())["job_id"]
        slurm("scontrol", "requeue", job_id, conf=cluster)
        restart_now(job_id, cluster)
        output, _ = driver.communicate(timeout=400)
    assert driver.returncode == 0, output
    jobs = json.loads((out / "sweep.json").read_text())["jobs"]
    assert [(j["status"], j["restarts"]) for j in jobs] == [("completed", 1), ("completed", 0)]
    requeued, straight = summary(first), summary(job_folder(out, "log.progress=false"))
    assert requeued["weights_sha256"][0] == requeued["weights_sha256"][1]  # the replicas agree after the restart
    assert requeued["weights_sha256"] == straight["weights_sha256"]  # ... and with the uninterrupted run


@pytest.mark.slow
@pytest.mark.slurm
def test_a_job_slurm_cancels_is_reported_with_its_reason(cluster, tmp_path):
    out = tmp_path / "sweep"
    short_and_long = ["trainer.epochs=1,60", *(a for a in LONG if not a.startswith("trainer.epochs="))]
    args = [sys.executable, "-m", "deeprob_cli", "train", "-m", *short_and_long, *LAUNCHER, f"hydra.sweep.dir={out}"]

    env = {**os.environ, "PYTHONPATH": str(REPO), **slurm_env(cluster)}
    with subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True) as driver:
        long = wait_for(lambda: checkpointed(out, "trainer.epochs=60"), "job 1's first checkpoint")
        slurm("scancel", json.loads((long / sweep.SLURM_RECORD).read_text())["job_id"], conf=cluster)
        output, _ = driver.communicate(timeout=300)
    assert driver.returncode == 0, output
    jobs = json.loads((out / "sweep.json").read_text())["jobs"]
    assert jobs[0]["status"] == "completed"
    assert jobs[1]["status"] == "interrupted" and "ended (CANCELLED) without a result" in jobs[1]["error"]
    assert summary(long)["resume"] == f"deeprob train resume={long}"
