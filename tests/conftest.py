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
    monkeypatch.setenv("DEEPROB_REGISTRY", str(tmp_path / "registry"))  # live runs counted per test (threads.py)


def run_cli(*args, cwd, check=True, env=None, timeout=300, real=False):
    """Run `deeprob ARGS` as a user would; returns a CompletedProcess (returncode, stdout, stderr).

    real=True starts a fresh interpreter (the console entry point exactly as a shell runs it: one such test per
    command, and the tests that send signals); otherwise the same dispatcher runs in this process, which saves
    the seconds of importing torch and Hydra for every call."""
    full_env = {"HYDRA_FULL_ERROR": "0", **(env or {})}
    if not real:
        return run_in_process(list(map(str, args)), cwd, full_env, check)
    result = subprocess.run([sys.executable, "-m", "deeprob_cli", *map(str, args)], cwd=cwd,
                            env={**os.environ, "PYTHONPATH": str(REPO), **full_env},
                            capture_output=True, text=True, timeout=timeout)
    return checked(result, args, check)


def run_in_process(args, cwd, env, check):
    """`deeprob ARGS` through deeprob_cli.__main__.main() in this process, with its own cwd, env and argv."""
    import io
    import logging
    from contextlib import redirect_stderr, redirect_stdout

    from hydra.core.global_hydra import GlobalHydra

    from deeprob_cli.__main__ import main

    saved = sys.argv, os.getcwd(), dict(os.environ), torch.get_num_threads(), logging.root.handlers[:]
    out, err = io.StringIO(), io.StringIO()
    os.environ.update(env)
    os.chdir(cwd)
    sys.argv = ["deeprob", *args]
    try:
        with redirect_stdout(out), redirect_stderr(err):
            try:
                code = main() or 0
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv, cwd0, env0, threads, handlers = saved
        os.chdir(cwd0)
        os.environ.clear()
        os.environ.update(env0)
        torch.set_num_threads(threads)
        for handler in logging.root.handlers[:]:  # Hydra's file handlers point into the finished run's folder
            if handler not in handlers:
                logging.root.removeHandler(handler)
                handler.close()
        GlobalHydra.instance().clear()
    return checked(subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue()), args, check)


def checked(result, args, check):
    if check and result.returncode != 0:
        raise AssertionError(f"deeprob {' '.join(map(str, args))} exited {result.returncode}\n"
                             f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}")
    return result


def make_cfg(*overrides, config_name="train"):
    """The real conf/ tree composed with overrides, as the command would see it (without the hydra node)."""
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name=config_name, overrides=list(overrides))


def run_dirs(root: Path):
    """Every run folder (one holding .hydra/) under root, sorted (a sweep's jobs in job order)."""
    from deeprob_cli.naming import job_order

    return sorted((p.parent for p in Path(root).rglob(".hydra")), key=job_order)


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
    """(scalars {tag: [(step, value)]}, histogram tags) from the run's TensorBoard event files; a split's writer
    (RUN/train, RUN/val, RUN/test: the same tag per split) read as "<split>/<tag>", e.g. train/loss."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    scalars, histograms = {}, set()
    for prefix, folder in event_folders(run_dir):
        acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "histograms": 0, "tensors": 0})
        acc.Reload()
        tags = acc.Tags()
        scalars.update({prefix + t: [(e.step, e.value) for e in acc.Scalars(t)] for t in tags["scalars"]})
        histograms |= {prefix + t for t in tags["histograms"]}  # a legacy histogram, or one in the plugin's format:
        histograms |= {prefix + t for t in tags["tensors"]
                       if acc.SummaryMetadata(t).plugin_data.plugin_name == "histograms"}
    return scalars, histograms


def event_folders(run_dir: Path) -> list:
    """[(tag prefix, folder)]: the run folder's own event files and each split writer's folder."""
    return [("", Path(run_dir))] + [(f"{split}/", Path(run_dir) / split) for split in ("train", "val", "test")
                                    if (Path(run_dir) / split).is_dir()]


def stopped_then_resumed(tmp_path, monkeypatch, args, step=27):
    """`deeprob train ARGS` uninterrupted into ref/, and into run/ stopped as by SIGTERM at `step` (the signal
    flag set where the loop checks it), exit 143, then resumed to the end; returns (run, ref) folders."""
    from deeprob_cli.run import Run

    run_cli("train", *args, "hydra.run.dir=ref", cwd=tmp_path)
    due = Run.checkpoint_due

    def stop_at_step(self):
        if self.progress.step == step:
            self.stop.signal, self.stop.code = "SIGTERM", 143
        return due(self)

    monkeypatch.setattr(Run, "checkpoint_due", stop_at_step)
    assert run_cli("train", *args, "hydra.run.dir=run", cwd=tmp_path, check=False).returncode == 143
    monkeypatch.setattr(Run, "checkpoint_due", due)
    run_cli("train", "resume=run", cwd=tmp_path)
    return tmp_path / "run", tmp_path / "ref"
