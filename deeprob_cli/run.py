"""A run's state and its folder: progress, resume, stop signals, checkpoint cadence, the summary, the folder lock.

    deeprob train resume=runs/2026-11-28/10-00-00        # Run.open() finds the checkpoint and continues from it

train.py holds the model and the data; this module holds what a run *is*: where it stands (`Progress`, saved in
every checkpoint so a resumed run continues bit for bit), which folder it owns (an exclusive lock for as long as
it runs), whether a signal asked it to stop, when it writes a checkpoint, and how it ends (`summary.json`,
written atomically, with a status of completed, diverged, interrupted or failed).
"""
import fcntl
import json
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import UserError, distributed
from .checkpoint import link_checkpoint, load_checkpoint, provenance, save_checkpoint
from .config import flatten, to_plain

# keys a resumed run may change: none of them changes a number the run computes (on CPU the result stays
# bit-identical; trainer.threads is not among them: torch's CPU reductions split work by thread count)
RESUMABLE_CHANGES = {"resume", "trainer.device", "trainer.eval_batch_size", "log.progress", "log.hist_every"}


def write_json(path: Path, value: dict):
    """Write JSON via a temporary file and a rename: a reader sees the old file or the new one, never half."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_text(json.dumps(value, indent=2) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_summary(out: Path) -> dict:
    """A run folder's summary.json ({} when there is none or it cannot be read)."""
    try:
        value = json.loads((Path(out) / "summary.json").read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


@dataclass
class Progress:
    """Where a run stands; saved in every checkpoint so a resumed run continues bit for bit."""

    epoch: int = 1  # the epoch in progress (1-based)
    index: int = 0  # steps done within it
    step: int = 0  # steps done in all
    order: torch.Tensor | None = None  # this epoch's data order
    losses: list = field(default_factory=list)  # this epoch's per-step losses (device tensors)
    correct: torch.Tensor | int = 0  # this epoch's correct predictions so far
    images: int = 0  # training images processed
    train_seconds: float = 0.0
    wall_before: float = 0.0  # wall-clock seconds of this run's earlier, interrupted sessions
    last_loss: float | None = None
    best_val: float | None = None
    metrics: dict = field(default_factory=dict)  # the last finished epoch's summary metrics

    def advance(self, loss, correct, batch_size: int):
        self.losses.append(loss)
        self.correct = self.correct + correct
        self.last_loss = loss.item()
        self.index, self.step, self.images = self.index + 1, self.step + 1, self.images + batch_size

    def end_epoch(self, train_loss: float, metrics: dict) -> bool:
        """Close the epoch; True when val accuracy improved (or there is no validation)."""
        val = metrics.get("val/acc")
        improved = val is None or self.best_val is None or val > self.best_val
        if val is not None and improved:
            self.best_val = val
        self.metrics = {"train_loss": train_loss, "train_acc": metrics["train/acc"],
                        "val_loss": metrics.get("val/loss"), "val_acc": val}
        self.epoch, self.index, self.order, self.losses, self.correct = self.epoch + 1, 0, None, [], 0
        return improved

    def state(self, elapsed: float) -> dict:
        """For the checkpoint; `elapsed` is this session's wall time so far."""
        return {**vars(self), "order": None if self.order is None else self.order.cpu(),
                "losses": torch.stack(self.losses).cpu() if self.losses else torch.zeros(0),
                "correct": int(self.correct), "wall_before": self.wall_before + elapsed}

    @classmethod
    def restore(cls, state: dict, device):
        state = dict(state)
        state["losses"] = list(state["losses"].to(device).unbind()) if len(state["losses"]) else []
        state["correct"] = torch.tensor(state["correct"], device=device)
        state["order"] = None if state["order"] is None else state["order"].to(device)
        return cls(**state)


class Diverged(Exception):
    """The loss (or a weight) became NaN or infinite."""


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived; a checkpoint was written."""

    def __init__(self, message, code):
        super().__init__(message)
        self.code = code


class StopSignals:
    """Turns SIGINT/SIGTERM into a flag checked after each step, so the step finishes and a checkpoint is written."""

    def __init__(self):
        self.signal, self.code, self.previous = None, 0, {}

    def _handle(self, signum, frame):
        self.signal, self.code = signal.Signals(signum).name, 128 + signum

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


class Run:
    """One run folder and where the run stands: `Run.open(cfg, out)`, then checkpoint()/finish()."""

    def __init__(self, cfg, out: Path, resumed: dict | None):
        self.cfg, self.out, self.resumed = cfg, Path(out), resumed
        self.progress = Progress()
        self.started = time.perf_counter()
        self.stop = StopSignals()
        self.lock = None
        self.facts = {}  # what summary.json records about the job (device, parameters, batch size, choices, ...)

    # ---- the folder: refuse another run's, continue an unfinished one, hold it while running
    @classmethod
    def open(cls, cfg, out: Path) -> "Run":
        """The run for folder `out`: a fresh one, or the checkpoint to continue (resume=RUN_DIR or resume=auto)."""
        out = Path(out)
        run = cls(cfg, out, None)
        run.acquire()
        try:
            run.resumed = run.find_checkpoint()
        except BaseException:
            run.release()
            raise
        return run

    def acquire(self):
        """An exclusive lock on the folder for the run's lifetime: a second run or resume of it is refused."""
        if not distributed.is_main():
            return
        self.out.mkdir(parents=True, exist_ok=True)
        for stale in self.out.glob("checkpoints/.*.tmp*"):  # a kill during a checkpoint write leaves these
            stale.unlink(missing_ok=True)
        self.lock = open(self.out / ".lock", "w")
        try:
            fcntl.flock(self.lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.lock.close()
            self.lock = None
            raise UserError(f"run folder {self.out} is in use by another deeprob process; wait for it to finish "
                            f"or choose another folder") from None

    def release(self):
        if self.lock is not None:
            self.lock.close()
            self.lock = None

    @property
    def completed(self) -> bool:
        return read_summary(self.out).get("status") == "completed"

    def find_checkpoint(self):
        last = self.out / "checkpoints" / "last.pt"
        resume = self.cfg.resume
        if resume is None:
            if (self.out / "summary.json").exists() or last.parent.exists():
                raise UserError(f"hydra.run.dir: {self.out} already holds a run; choose another folder "
                                f"(or continue it: deeprob train resume={self.out})")
            return None
        if resume == "auto" and self.completed:
            return None
        if not last.is_file():
            if resume == "auto":
                return None
            raise UserError(f"resume: {self.out} holds no checkpoints/last.pt; a run can be resumed once it has "
                            f"saved one")
        if self.completed:
            raise UserError(f"resume: {self.out} already completed; start a new run instead")
        state = load_checkpoint(last)
        saved, now = flatten(state["config"]), flatten(to_plain(self.cfg))
        for key in sorted(set(saved) | set(now)):
            if saved.get(key) != now.get(key) and key not in RESUMABLE_CHANGES:
                raise UserError(f"resume: {key}={now.get(key)!r} differs from the run's {saved.get(key)!r}; a resumed "
                                f"run keeps its configuration (it may change: {', '.join(sorted(RESUMABLE_CHANGES))})")
        return state

    # ---- while training
    def start_epoch(self):
        """Start the training clock (progress.train_seconds counts steps, not validation)."""
        self._lap = self._epoch_start = time.perf_counter()

    def lap(self):
        """Add the training seconds since the clock last started to progress; the clock goes on from now."""
        now = time.perf_counter()
        self.progress.train_seconds += now - self._lap
        self._lap = now

    def epoch_seconds(self) -> float:
        """Seconds since this session's last lap started an epoch."""
        return time.perf_counter() - self._epoch_start

    def restore(self, device, order, noise):
        """Put progress and the data-order/augmentation generators back where the checkpoint left them."""
        from .checkpoint import restore_rng

        self.progress = Progress.restore(self.resumed["progress"], device)
        restore_rng(self.resumed["rng"], order, noise)

    def checkpoint_due(self) -> bool:
        """After a step: a stop signal or the trainer.checkpoint_every cadence asks for a checkpoint."""
        distributed.share_stop(self.stop)  # a signal to any rank stops all of them at this step
        every = self.cfg.trainer.checkpoint_every
        return bool(self.stop.signal or (every and self.progress.step % every == 0))

    def checkpoint(self, model, state: dict, best: bool = False):
        """checkpoints/last.pt (and best.pt when `best`); refused, as a divergence, when a weight is not finite."""
        if not distributed.is_main():
            return
        if not all(torch.isfinite(p).all() for p in model.parameters()):
            raise self.diverged(f"a weight became NaN or infinite at step {self.progress.step}")
        last = self.out / "checkpoints" / "last.pt"
        save_checkpoint(last, {**state, "config": to_plain(self.cfg),
                               "progress": self.progress.state(time.perf_counter() - self.started),
                               "provenance": provenance()})
        if best:
            link_checkpoint(last, last.with_name("best.pt"))

    def diverged(self, what: str) -> Diverged:
        """The Diverged error to raise, its summary written; the message says truthfully what is kept."""
        last = self.out / "checkpoints" / "last.pt"
        kept = (f"the last good checkpoint (a finite one) is {last}" if last.is_file() else
                "no checkpoint had been written yet")
        message = (f"{what} (last finite loss {self.progress.last_loss}); lower optim.lr or pick another init= / "
                   f"schedule=; {kept}")
        self.finish("diverged", step=self.progress.step, last_finite_loss=self.progress.last_loss, error=message)
        return Diverged(message)

    def interrupted(self) -> Interrupted:
        resume = f"deeprob train resume={_quote(self.out)}"
        self.finish("interrupted", signal=self.stop.signal, resume=resume)
        return Interrupted(f"{self.stop.signal} at step {self.progress.step}: checkpoint saved; continue with: "
                           f"{resume}", self.stop.code)

    # ---- the end
    def finish(self, status: str, **record) -> dict:
        """summary.json (rank 0) with the status, the last epoch's metrics, timing and provenance."""
        p = self.progress
        record = {"status": status, "epochs_completed": p.epoch - 1, "steps": p.step, **p.metrics, **record,
                  **self.facts, "seconds": p.wall_before + time.perf_counter() - self.started, "train_seconds": p.train_seconds,
                  "images_per_second": p.images / max(p.train_seconds, 1e-9), **provenance()}
        if distributed.is_main():
            write_json(self.out / "summary.json", record)
        self.summary = record
        return record


def _quote(path: Path) -> str:
    """A path as a shell word (spaces and non-ASCII characters survive a copy and paste)."""
    import shlex

    return shlex.quote(str(path))


# ---------------------------------------------------------------- before Hydra: the command line's run folder

RUN_FILES = ("summary.json", "checkpoints", "stats.json")  # what makes a folder another run's


def holds_run(folder: Path) -> bool:
    return any((Path(folder) / name).exists() for name in RUN_FILES)


def prepare(command: str, config_name: str, args: list) -> list:
    """The arguments to hand Hydra, after the checks that must come before it writes anything: the command line
    composed and validated (a mistake is one line, exit 2, no folder), and the run-folder policy — an existing
    run is never written into except to continue it (resume=RUN_DIR, or resume=auto on an unfinished run)."""
    from .config import precheck

    value = lambda key: next((a.split("=", 1)[1] for a in args if a.startswith(f"{key}=")), None)
    resume, run_dir = value("resume"), value("hydra.run.dir")
    if resume not in (None, "null", "auto"):
        return resume_args(args, Path(resume))  # checked against the checkpoint's own config when the run opens
    precheck(args, config_name)
    if run_dir is not None and holds_run(Path(run_dir)):
        if resume != "auto":
            raise UserError(f"hydra.run.dir: {run_dir} already holds a run; choose another folder"
                            + (f" (or continue it: deeprob train resume={_quote(run_dir)})" if command == "train"
                               else ""))
        args = [*args, "hydra.output_subdir=null"]  # continue it, keeping the run's own .hydra/ record
    return args


def resume_args(args: list, run: Path) -> list:
    """`resume=RUN_DIR`: compose from that run's saved config, write into its folder, leave its .hydra/ as it is."""
    saved = run / ".hydra" / "config.yaml"
    if not saved.is_file():
        raise UserError(f"resume: {run} is not a run folder (no .hydra/config.yaml); pass the folder of the run "
                        f"to continue")
    rest = [f"resume={hydra_quote(run)}" if a.startswith("resume=") else a for a in args]
    return [f"--config-dir={saved.parent.resolve()}", "--config-name=config", f"hydra.run.dir={hydra_quote(run)}",
            "hydra.output_subdir=null", *rest]


def hydra_quote(path) -> str:
    """A path as one value of a Hydra override (sweep jobs are named key=value, which Hydra would misread)."""
    text = str(path)
    return f"'{text}'" if "'" not in text else f'"{text}"'
