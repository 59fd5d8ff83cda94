"""Sweep bookkeeping, hooked into Hydra as a callback (conf/train.yaml: hydra.callbacks).

At the end of every `deeprob train -m ...` it writes <sweep dir>/sweep.json — each job's overrides, status,
val accuracy and error — and logs one line: how many jobs completed, failed or diverged.
"""
import json
import logging
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import OmegaConf

log = logging.getLogger("deeprob")


def collect(sweep_dir: Path) -> list:
    """One record per job folder of a sweep, in job order."""
    jobs = []
    for overrides in sorted(Path(sweep_dir).glob("*/.hydra/overrides.yaml"), key=lambda p: _job_order(p.parent.parent)):
        job = overrides.parent.parent
        summary = job / "summary.json"
        s = json.loads(summary.read_text()) if summary.is_file() else {"status": "unfinished"}
        jobs.append({"job": job.name, "overrides": list(OmegaConf.load(overrides)), "status": s.get("status"),
                     "val_acc": s.get("val_acc"), "error": s.get("error")})
    return jobs


def _job_order(folder: Path):
    return (0, int(folder.name)) if folder.name.isdigit() else (1, folder.name)


class SweepSummary(Callback):
    def on_multirun_end(self, config, **kwargs):
        sweep_dir = Path(config.hydra.sweep.dir)
        jobs = collect(sweep_dir)
        (sweep_dir / "sweep.json").write_text(json.dumps({"jobs": jobs}, indent=2) + "\n")
        counts = {}
        for job in jobs:
            counts[job["status"]] = counts.get(job["status"], 0) + 1
        log.info("sweep: %s; details in %s", ", ".join(f"{n} {s}" for s, n in counts.items()),
                 sweep_dir / "sweep.json")
        for job in jobs:
            if job["status"] != "completed":
                log.warning("job %s (%s): %s %s", job["job"], " ".join(job["overrides"]), job["status"],
                            job["error"] or "")
