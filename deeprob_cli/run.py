"""A run's state: progress, resume, checkpoint cadence, how it ends (summary.json).

    deeprob train resume=runs/2026-11-28/10-00-00        # Run.open() finds the checkpoint and continues from it

train.py holds the model and the data; this module holds what a run *is*: where it stands (`Progress`, saved in
every checkpoint so a resumed run continues bit for bit), whether a signal asked it to stop (exits.SIGNALS), when
it writes a checkpoint, and how it ends (`summary.json`, written atomically, with a status of completed, diverged,
interrupted or failed). The folder it runs in is owned through deeprob_cli.folders.
"""
from __future__ import annotations

import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import UserError, distributed
from .checkpoint import first_nonfinite, link_checkpoint, load_checkpoint, provenance, restore_rng, save_checkpoint
from .config import RESUMABLE_CHANGES, changed, flatten, to_plain
from .exits import SIGNALS, Diverged, Interrupted
from .folders import claim, read_summary, release, shell_quote, write_json
from .trust import upgraded

SECONDS_TO = (85, 87, 90, 94)  # validation accuracies (%) whose first train-second summary.json records


@dataclass
class Progress:
    """Where a run stands; saved in every checkpoint so a resumed run continues bit for bit."""

    epoch: int = 1  # the epoch in progress (1-based)
    index: int = 0  # steps done within it
    step: int = 0  # steps done in all
    order: torch.Tensor | None = None  # this epoch's data order
    losses: list = field(default_factory=list)  # this epoch's per-step losses (device tensors)
    logged: int = 0  # how many of them are in TensorBoard already (written before each checkpoint)
    correct: torch.Tensor | int = 0  # this epoch's correct predictions so far
    images: int = 0  # training images processed
    train_seconds: float = 0.0
    wall_before: float = 0.0  # wall-clock seconds of this run's earlier, interrupted sessions
    last_loss: float | None = None
    best_val: float | None = None
    metrics: dict = field(default_factory=dict)  # the last finished epoch's summary metrics
    changes: dict = field(default_factory=dict)  # allowed changes made on resume: key → [before, after]
    seconds_to: dict = field(default_factory=dict)  # val accuracy (%) → train seconds when first reached

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
        for target in SECONDS_TO:
            if val is not None and val >= target / 100 and target not in self.seconds_to:
                self.seconds_to[target] = self.train_seconds
        self.metrics = {"train_loss": train_loss, "train_acc": metrics["train/acc"],
                        "val_loss": metrics.get("val/loss"), "val_acc": val}
        self.epoch, self.index, self.order, self.losses, self.correct = self.epoch + 1, 0, None, [], 0
        self.logged = 0
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



class Run:
    """One run folder and where the run stands: `Run.open(cfg, out)`, then checkpoint()/finish()."""

    def __init__(self, cfg, out: Path, resumed: dict | None):
        self.cfg, self.out, self.resumed = cfg, Path(out), resumed
        self.progress = Progress()
        self.restored = False  # progress taken from the resumed checkpoint yet
        self.started = time.perf_counter()
        self.stop = SIGNALS
        self.lock = None  # folders.FolderLock while this process holds the folder
        self.facts = {}  # what summary.json records about the job (device, parameters, batch size, choices, ...)
        self.changes = {}  # allowed changes a resume makes: key → [before, after] (find_checkpoint)
        self.summary = None  # summary.json's record once written (finish)
        self._lap = self._epoch_start = self.started  # the training clock (start_epoch, lap)

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
        """An exclusive lock on the folder for the run's lifetime (the one launch.prepare() took before Hydra started,
        or a new one: sweep jobs, direct calls): a second run or resume of it is refused."""
        if distributed.is_main():
            self.lock = claim(self.out)

    def release(self):
        if self.lock is not None and not self.lock.pinned:  # launch.prepare()'s lock is train.cli()'s to hand back
            release(self.out)
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
                                f"(or continue it: deeprob train resume={shell_quote(self.out)})")
            return None
        if resume == "auto" and self.completed:
            return None
        if not last.is_file():
            if resume == "auto" or read_summary(self.out).get("status") == "interrupted":
                self.start_over()  # stopped during its start-up: there was nothing to keep
                return None
            raise UserError(f"resume: {self.out} holds no checkpoints/last.pt; a run can be resumed once it has "
                            f"saved one")
        if self.completed:
            raise UserError(f"resume: {self.out} already completed; start a new run instead")
        state = load_checkpoint(last)
        saved, now = flatten(upgraded(state["config"])), flatten(to_plain(self.cfg))
        for key in sorted(set(saved) | set(now)):
            if saved.get(key) != now.get(key):
                if key not in RESUMABLE_CHANGES:
                    raise UserError(changed(key, now.get(key), saved.get(key)))
                if key != "resume":
                    self.changes[key] = [saved.get(key), now.get(key)]
        return state

    def after_earlier_events(self):
        """Wait, if need be, into a second later than this folder's newest TensorBoard event file was created in.
        TensorBoard reads a folder's event files in name order and a name starts with its creation second; a
        resumed run's file created in the same second as the interrupted one's would be ordered by process id,
        and read first half the time, its purge then undoing the wrong file (measured: kill -9 and resume within
        one second lost the first steps)."""
        stamps = [int(p.name.split(".")[3]) for p in self.out.glob("events.out.tfevents.*")
                  if len(p.name.split(".")) > 3 and p.name.split(".")[3].isdigit()]
        if stamps and max(stamps) + 1 > time.time():
            time.sleep(max(stamps) + 1 - time.time())

    def start_over(self):
        """A run stopped before its first checkpoint starts from scratch: drop its start-up's TensorBoard records."""
        for events in self.out.glob("events.out.tfevents.*"):
            events.unlink(missing_ok=True)

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
        saved, rng = dict(self.resumed["progress"]), self.resumed["rng"]
        ranks = self.resumed.get("ranks") or [{"rng": rng}]
        if len(ranks) != distributed.world_size():
            raise UserError(f"resume: {self.out} was trained by {len(ranks)} process(es); resume it with the same "
                            f"number (torchrun --nproc_per_node={len(ranks)}) so that it continues exactly")
        own = ranks[distributed.rank()]  # under DDP: this rank's generators and its share of the epoch's steps
        saved.update({k: own[k] for k in ("losses", "correct") if k in own})
        self.progress = Progress.restore(saved, device)
        self.progress.changes.update(self.changes)  # stated in summary.json
        self.restored = True
        restore_rng(own["rng"], order, noise)

    def checkpoint_due(self) -> bool:
        """After a step: a stop signal or the trainer.checkpoint_every cadence asks for a checkpoint."""
        distributed.share_stop(self.stop)  # a signal to any rank stops all of them at this step
        every = self.cfg.trainer.checkpoint_every
        return bool(self.stop.signal or (every and self.progress.step % every == 0))

    def checkpoint(self, model, state: dict, best: bool = False):
        """checkpoints/last.pt (and best.pt when `best`); refused, as a divergence, when a weight is not finite:
        the last checkpoint is a finite one by construction."""
        if distributed.active():  # each rank's own generators and share of the epoch: every rank resumes exactly
            own = self.progress.state(0.0)
            state = {**state, "ranks": distributed.gather({"rng": state["rng"], "losses": own["losses"],
                                                            "correct": own["correct"]})}
        if not distributed.is_main():
            return
        bad = first_nonfinite({k: state.get(k) for k in ("model", "average", "preprocess", "optimizer")})
        if bad:  # every saved number, not only the evaluated weights: buffers, lookahead's trained weights
            raise self.diverged(f"a weight became NaN or infinite at step {self.progress.step} ({bad})")
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

    def interrupted(self, during: str | None = None) -> Interrupted:
        """The Interrupted error to raise, summary.json written (status interrupted, the command that continues)."""
        if self.resumed and not self.restored:  # stopped while a resumed run started: it stands where it stood
            self.progress = Progress.restore(self.resumed["progress"], "cpu")
        resume = f"deeprob train resume={shell_quote(self.out)}"
        p = self.progress
        if not (self.out / "checkpoints" / "last.pt").is_file():
            what = f"during {during or 'start-up'}, before the first checkpoint: nothing to keep; start it again"
        elif during:
            what = f"during {during} (after {p.epoch - 1} epochs, {p.step} steps; checkpoint kept); continue"
        else:
            what = f"at step {p.step}: checkpoint saved; continue"
        self.finish("interrupted", signal=self.stop.signal, resume=resume)
        return Interrupted(f"{self.stop.signal} {what} with: {resume}", self.stop.code or 128 + signal.SIGINT)

    def failed(self, error: str):
        """summary.json for a run that stopped on an error (best effort: the error may be a full disk)."""
        try:
            self.finish("failed", error=error)
        except OSError:
            pass

    # ---- the end
    def finish(self, status: str, **record) -> dict:
        """summary.json (rank 0) with the status, the last epoch's metrics, timing and provenance."""
        p = self.progress
        if p.changes:  # what a resume changed (trainer.device, eval_batch_size: the last bits of val numbers may move)
            record["changed_on_resume"] = p.changes
        record = {"status": status, "epochs_completed": p.epoch - 1, "steps": p.step, **p.metrics,
                  "seconds_to": {str(t): p.seconds_to.get(t) for t in SECONDS_TO} if p.metrics.get("val_acc") is not None
                  else None, **record,
                  **self.facts, "seconds": p.wall_before + time.perf_counter() - self.started, "train_seconds": p.train_seconds,
                  "images_per_second": p.images / max(p.train_seconds, 1e-9), **provenance()}
        self.summary = record
        if distributed.is_main():
            write_json(self.out / "summary.json", record)
        return record
