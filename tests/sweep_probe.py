"""A Hydra callback that tests add to a sweep (`+hydra.callbacks.probe._target_=sweep_probe.Probe`): in each job's
own process it records which process ran the job and how many torch CPU threads it trained with; and the first
jobs start together (see on_job_start).

Kept apart from conftest.py, whose import sets torch's thread count: a launcher's worker process imports this
module to unpickle the callback, and must keep the thread count the job itself chose."""
import json
import os
import time
from pathlib import Path

import torch
from hydra.experimental.callback import Callback

TOGETHER = 2  # jobs that wait for each other at the start (a parallel launcher runs them side by side)


class Probe(Callback):
    def __init__(self, wait_s: float = 30.0):
        self.wait_s = wait_s

    def on_job_start(self, config, **kwargs):
        """A rendezvous of the first TOGETHER jobs: each waits (up to wait_s) until they have all started, so that
        jobs a parallel launcher runs at once overlap however unevenly its workers started up (a serial launcher
        runs the first job alone: it waits wait_s, then goes on)."""
        sweep = Path(config.hydra.sweep.dir)
        sweep.mkdir(parents=True, exist_ok=True)
        (sweep / f".probe-{config.hydra.job.num}").touch()
        deadline = time.time() + self.wait_s
        while len(list(sweep.glob(".probe-*"))) < TOGETHER and time.time() < deadline:
            time.sleep(0.02)

    def on_job_end(self, config, job_return, **kwargs):
        record = {"pid": os.getpid(), "threads": torch.get_num_threads()}
        (Path(config.hydra.runtime.output_dir) / "probe.json").write_text(json.dumps(record))
