"""Multi-process training under torchrun (DDP, gloo on CPU): one run folder, rank 0 writes, replicas agree."""
import os
import re
import signal
import subprocess
import sys
import time
import uuid

import pytest
import torch

from conftest import FAST, REPO, read_events, run_dirs, summary
from deeprob_cli import distributed
from deeprob_cli.checkpoint import load_checkpoint
from deeprob_cli.evaluate import restore
from omegaconf import OmegaConf

# 8 steps of 2 × 32 images; a learning rate that moves the loss visibly within one epoch
DDP = [*FAST, "trainer.batch_size=32", "dataset.num_train=768", "optim.lr=0.05", "schedule=constant"]


def torchrun(*args, cwd, module="deeprob_cli.train"):
    """`torchrun --standalone --nproc_per_node=2 -m MODULE ARGS`: rendezvous on a free localhost port."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "HYDRA_FULL_ERROR": "0", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                             "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, f"torchrun exited {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def test_two_processes_train_one_run_with_identical_replicas(tmp_path):
    result = torchrun("train", *DDP, cwd=tmp_path, module="deeprob_cli")  # `deeprob train` under torchrun
    (run,) = run_dirs(tmp_path / "runs")  # one folder, though both ranks ran Hydra
    assert len(list((tmp_path / "runs").glob("*/*"))) == 1
    s = summary(run)
    assert s["status"] == "completed" and s["world_size"] == 2
    assert s["batch_size"] == 32 and s["effective_batch_size"] == 64 and s["steps"] == (768 - 256) // 64
    assert "effective batch 64 = 32 per process × 2" in result.stdout
    # rank 0 alone writes events, and one train.log (ranks > 0 log warnings to their console only)
    assert len(list(run.glob("events.out.tfevents.*"))) == 1
    assert [p.name for p in run.glob("*.log")] == ["train.log"]
    losses = [v for _, v in read_events(run)[0]["train/loss"]]
    assert len(losses) == s["steps"] and losses[-1] < losses[0]
    # each rank hashed its own parameters; rank 0's checkpoint on disk has the same bytes
    digests = s["weights_sha256"]
    assert len(digests) == 2 and digests[0] == digests[1]
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    model, _ = restore(state, OmegaConf.create(state["config"]), torch.device("cpu"))  # plain keys: loadable
    assert distributed.parameter_digest(model) == digests[0]


def _pid_with(env: dict) -> int | None:
    """The pid of this user's process whose environment holds every NAME=VALUE of env (read from /proc)."""
    wanted = {f"{k}={v}".encode() for k, v in env.items()}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                held = set(open(f"/proc/{entry}/environ", "rb").read().split(b"\0"))
            except OSError:  # gone, or another user's
                continue
            if wanted <= held:
                return int(entry)
    return None


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir("/proc"), reason="finds rank 1's process through /proc (Linux)")
def test_sigterm_to_one_rank_stops_every_rank_at_the_same_step(tmp_path):
    """A scheduler's SIGTERM that reaches rank 1 alone: rank 0 learns of it at the next step (StopSignals shared by an
    all-reduce), so both stop after the same step, rank 0 writes that step's checkpoint and an interrupted summary."""
    mark = uuid.uuid4().hex  # finds this test's own workers among every process of the machine
    env = {**os.environ, "PYTHONPATH": str(REPO), "HYDRA_FULL_ERROR": "0", "OMP_NUM_THREADS": "1",
           "DEEPROB_TEST_MARK": mark}
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                             "-m", "deeprob_cli", "train", *DDP, "trainer.epochs=100", "trainer.checkpoint_every=2",
                             "hydra.run.dir=run"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.time() + 240
        while not (run / "checkpoints" / "last.pt").exists():  # the ranks are in the loop: step 2 was taken
            assert proc.poll() is None, proc.communicate()
            assert time.time() < deadline, "no checkpoint within 240 s"
            time.sleep(0.05)
        rank1 = _pid_with({"DEEPROB_TEST_MARK": mark, "RANK": "1"})
        assert rank1 is not None and rank1 != _pid_with({"DEEPROB_TEST_MARK": mark, "RANK": "0"})
        os.kill(rank1, signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert (run / "summary.json").is_file(), err[-3000:]
    s = summary(run)
    assert s["status"] == "interrupted" and s["signal"] == "SIGTERM", s
    assert 2 <= s["steps"] < 100 * 8 and s["world_size"] == 2
    assert load_checkpoint(run / "checkpoints" / "last.pt")["progress"]["step"] == s["steps"]
    # each rank that got to say so names the step it stopped after: rank 1 always, rank 0 unless torchrun's own
    # SIGTERM (sent once rank 1 has exited) ends it first; summary.json is rank 0's word
    said = [int(n) for n in re.findall(r"deeprob train: interrupted: SIGTERM at step (\d+)", out + err)]
    assert said and set(said) == {s["steps"]}, (said, err[-3000:])


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir("/proc"), reason="finds rank 0's process through /proc (Linux)")
def test_a_resumed_ddp_run_equals_the_uninterrupted_one(tmp_path):
    """Each rank resumes its own generators and its share of the epoch (the checkpoint gathers them), so augmentation
    draws after the restart are those of an uninterrupted run and the final weights agree bit for bit."""
    mark = uuid.uuid4().hex
    env = {**os.environ, "PYTHONPATH": str(REPO), "HYDRA_FULL_ERROR": "0", "OMP_NUM_THREADS": "1",
           "DEEPROB_TEST_MARK": mark}
    args = [*DDP, "trainer.epochs=6", "trainer.checkpoint_every=2", "augment=[flip,crop]"]
    torchrun("train", *args, "hydra.run.dir=ref", cwd=tmp_path, module="deeprob_cli")
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "deeprob_cli"]
    proc = subprocess.Popen([*launch, "train", *args, "hydra.run.dir=run"], cwd=tmp_path, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    run = tmp_path / "run"
    try:
        deadline = time.time() + 240
        while not (run / "checkpoints" / "last.pt").exists():
            assert proc.poll() is None, proc.communicate()
            assert time.time() < deadline, "no checkpoint within 240 s"
            time.sleep(0.05)
        os.kill(_pid_with({"DEEPROB_TEST_MARK": mark, "RANK": "0"}), signal.SIGTERM)
        proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    stopped = summary(run)
    assert stopped["status"] == "interrupted" and stopped["steps"] < 6 * 8, stopped
    assert len(load_checkpoint(run / "checkpoints" / "last.pt")["ranks"]) == 2  # each rank's own state
    torchrun("train", "resume=run", cwd=tmp_path, module="deeprob_cli")
    resumed, straight = summary(run), summary(tmp_path / "ref")
    assert resumed["status"] == "completed" and resumed["weights_sha256"] == straight["weights_sha256"]
    for key in ("train_loss", "train_acc", "val_loss", "val_acc"):
        assert resumed[key] == straight[key], key


@pytest.mark.slow
def test_sync_bn_is_refused_on_cpu_in_one_line(tmp_path):
    with pytest.raises(AssertionError, match="trainer.sync_bn: true needs CUDA"):
        torchrun(*DDP, "trainer.sync_bn=true", cwd=tmp_path)


def test_without_torchrun_every_helper_is_the_single_process_identity():
    assert not distributed.launched() and distributed.world_size() == 1 and distributed.is_main()
    index = torch.arange(6)
    assert distributed.shard(index) is index and distributed.effective_batch(64, 1000) == 64
    assert distributed.rank_seed(5) == 5 and distributed.all_finite(torch.tensor(1.0))
    assert not distributed.all_finite(torch.tensor(float("nan")))
    model = torch.nn.Linear(2, 2)
    assert distributed.wrap(model, sync_bn=True, seed=0) is model and distributed.checksums(model) == {}
