"""Multi-process training under torchrun (DDP, gloo on CPU): one run folder, rank 0 writes, replicas agree."""
import os
import subprocess
import sys

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
