"""The thread policy (deeprob_cli/threads.py): OpenMP's passive wait set before torch starts, each run's share of
the cores among the live deeprob runs and a launcher's processes (threads × processes ≤ cores), a resumed run
keeping its own count. Real processes throughout: the registry counts live process ids."""
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import REPO, run_cli, summary
from deeprob_cli import threads
from deeprob_cli.threads import live_runs, passive_wait, register, share, usable_cores

HOLD = "from deeprob_cli.threads import register; register(); import time; print('ready', flush=True); time.sleep(120)"


@pytest.fixture()
def registry(tmp_path, monkeypatch):
    folder = tmp_path / "registry"
    monkeypatch.setenv("DEEPROB_REGISTRY", str(folder))
    return folder


def holders(n):
    """n real processes registered as live deeprob runs (they wait until killed)."""
    procs = [subprocess.Popen([sys.executable, "-c", HOLD], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)}) for _ in range(n)]
    for p in procs:
        assert p.stdout.readline().strip() == "ready"
    return procs


def stop(procs):
    for p in procs:
        p.kill()
        p.wait()


@pytest.mark.parametrize("environ, expected", [
    ({}, "PASSIVE"),
    ({"OMP_WAIT_POLICY": "ACTIVE"}, "ACTIVE"),  # the user's choice stands
    ({"GOMP_SPINCOUNT": "1000"}, None),
    ({"KMP_BLOCKTIME": "0"}, None),
])
def test_passive_wait_unless_the_user_chose_a_policy(environ, expected):
    env = dict(environ)
    assert passive_wait(env) == (expected == "PASSIVE" and not environ)
    assert env.get("OMP_WAIT_POLICY") == expected


def test_the_policy_is_in_the_environment_before_torch_loads_openmp():
    """`import deeprob_cli` sets it with torch not yet imported (GNU OpenMP reads it once, when torch loads it)."""
    code = ("import os, sys; import deeprob_cli; print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k not in threads.WAIT_SETTINGS}
    out = subprocess.run([sys.executable, "-c", code], env={**env, "PYTHONPATH": str(REPO)},
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == ["PASSIVE", "False"]


def test_live_runs_counts_live_processes_only(registry):
    procs = holders(2)
    try:
        register(registry)
        assert live_runs(registry) == 3
        stop(procs[:1])
        assert live_runs(registry) == 2
        assert not (registry / str(procs[0].pid)).exists()  # the dead one's entry is removed
        # a live process id whose start time differs from the recorded one is another process (a reused id)
        (registry / str(os.getppid())).write_text("1")
        assert live_runs(registry) == 2
    finally:
        stop(procs)
        threads.unregister(registry)
    assert live_runs(registry) == 1  # only this process, which always counts itself


@pytest.mark.parametrize("others, processes", [(0, None), (1, None), (3, None), (0, 2), (0, -1), (1, 2), (0, 64)])
def test_threads_times_processes_never_exceed_the_cores(registry, others, processes):
    """Each run's share: the usable cores ÷ max(a launcher's processes, the live runs); never below one thread."""
    procs = holders(others)
    try:
        got = share(None, processes, registry)
    finally:
        stop(procs)
    cores = usable_cores()
    sharers = max(cores if processes == -1 else (processes or 1), others + 1)
    assert got == max(1, cores // sharers)
    assert got * sharers <= cores or got == 1
    assert share(3, processes, registry) == 3  # trainer.threads wins


def test_cores_other_processes_keep_busy_are_left_to_them(registry):
    """A real busy loop beside this process is measured as about one busy core (more where the machine has other
    load), and the share leaves it that core."""
    since = threads._cpu_snapshot()
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(1.5)
        busy = threads.busy_cores(since)
    finally:
        stop([spinner])
    assert 0.6 <= busy <= usable_cores() + 0.1
    cores = usable_cores()
    assert share(None, None, registry, busy=1.0) == max(1, cores - 1)
    assert share(None, None, registry, busy=cores) == 1  # never below one thread
    assert share(None, None, registry, busy=0.4) == cores  # less than half a core: noise, not a busy core
    assert share(2, None, registry, busy=cores) == 2  # trainer.threads wins


def test_usable_cores_follow_the_affinity_mask():
    code = "import os; os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]}); " \
           "from deeprob_cli.threads import usable_cores; print(usable_cores(), os.cpu_count())"
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(REPO)},
                         capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == "1"


FAST = ["dataset=synthetic", "dataset.num_train=640", "model.widths=[8,16]", "trainer.batch_size=32",
        "log.hist_every=0", "log.progress=false"]


def _start(cwd, *args, env):
    return subprocess.Popen([sys.executable, "-m", "deeprob_cli", "train", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.skipif(usable_cores() < 2, reason="a share below the cores needs 2 cores")
def test_a_run_beside_another_takes_its_share_and_keeps_it_on_resume(tmp_path, registry):
    """A real `deeprob train` (no OMP_NUM_THREADS, no trainer.threads) beside a live run trains with
    cores ÷ 2 threads; interrupted and resumed alone, it keeps that count, and ends bit for bit as a run pinned
    to that count from the start."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env.update(PYTHONPATH=str(REPO), HYDRA_FULL_ERROR="0")
    half = usable_cores() // 2
    procs = holders(1)
    try:
        run = _start(tmp_path, *FAST, "trainer.epochs=3", "trainer.checkpoint_every=3", "hydra.run.dir=run", env=env)
        deadline = time.time() + 180
        while not (tmp_path / "run" / "checkpoints" / "last.pt").exists() and run.poll() is None:
            assert time.time() < deadline
            time.sleep(0.05)
        run.send_signal(signal.SIGTERM)
        _, err = run.communicate(timeout=120)
    finally:
        stop(procs)
    assert run.returncode == 128 + signal.SIGTERM, err
    assert summary(tmp_path / "run")["threads"] == half
    run_cli("train", "resume=run", cwd=tmp_path, real=True, env={"OMP_NUM_THREADS": ""})
    pinned = _start(tmp_path, *FAST, "trainer.epochs=3", f"trainer.threads={half}", "hydra.run.dir=pinned",
                    env=env)
    assert pinned.wait(timeout=180) == 0
    a, b = summary(tmp_path / "run"), summary(tmp_path / "pinned")
    assert a["threads"] == b["threads"] == half
    keys = ("train_loss", "val_loss", "val_acc", "steps")
    assert {k: a[k] for k in keys} == {k: b[k] for k in keys}
    wa = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    wb = torch.load(tmp_path / "pinned" / "checkpoints" / "last.pt", weights_only=True)
    assert wa["threads"] == half and all(torch.equal(wa["model"][k], wb["model"][k]) for k in wa["model"])
