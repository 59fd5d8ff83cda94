"""Shared test helpers: the real CLI in a subprocess, the real config composed with Hydra's compose API,
and TensorBoard event files read back with TensorBoard's own reader."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from deeprob_cli.config import CONFIG_DIR

REPO = Path(__file__).resolve().parent.parent
# a small, fast configuration for end-to-end runs on synthetic data
FAST = ["dataset=synthetic", "trainer.epochs=1", "trainer.batch_size=64", "model.widths=[8,16]",
        "log.hist_every=2"]


# Tests train tiny models: one intra-op thread per test process is faster than two fighting over tiny tensors,
# and lets `pytest -n 2` run two test processes side by side on 2 cores.
torch.set_num_threads(1)
os.environ["OMP_NUM_THREADS"] = "1"  # inherited by every CLI subprocess


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPROB_CACHE", str(tmp_path / "cache"))


def run_cli(*args, cwd, check=True, env=None, timeout=300):
    """Run `deeprob ARGS` as a user would, in a fresh interpreter; returns the CompletedProcess."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), "HYDRA_FULL_ERROR": "0", **(env or {})}
    result = subprocess.run([sys.executable, "-m", "deeprob_cli", *map(str, args)], cwd=cwd, env=full_env,
                            capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"deeprob {' '.join(map(str, args))} exited {result.returncode}\n"
                             f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}")
    return result


def make_cfg(*overrides):
    """The real conf/ tree composed with overrides, as train.py would see it (without the hydra node)."""
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))


def run_dirs(root: Path):
    """Every run folder (one holding .hydra/) under root, sorted."""
    return sorted(p.parent for p in Path(root).rglob(".hydra"))


def tree_digest(folder: Path) -> str:
    """One hash over every file's name and bytes under folder: equal digests mean nothing was touched."""
    import hashlib

    h = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        h.update(str(path.relative_to(folder)).encode() + path.read_bytes())
    return h.hexdigest()


def summary(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / "summary.json").read_text())


def read_events(run_dir: Path):
    """(scalars {tag: [(step, value)]}, histogram tags) from the run's TensorBoard event files."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "histograms": 0, "tensors": 0})
    acc.Reload()
    tags = acc.Tags()
    scalars = {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in tags["scalars"]}
    return scalars, set(tags["histograms"])
