"""A run's state and its folder: progress, resume, stop signals, checkpoint cadence, the summary, the folder lock.

    deeprob train resume=runs/2026-11-28/10-00-00        # Run.open() finds the checkpoint and continues from it

train.py holds the model and the data; this module holds what a run *is*: where it stands (`Progress`, saved in
every checkpoint so a resumed run continues bit for bit), which folder it owns (an exclusive lock for as long as
it runs), whether a signal asked it to stop, when it writes a checkpoint, and how it ends (`summary.json`,
written atomically, with a status of completed, diverged, interrupted or failed).
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import shlex
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from . import UserError

# torch, Hydra and the checkpoint helpers are imported where they are used: `deeprob train` imports this module
# before prepare() installs the signal handlers, so importing it must stay instant (a Ctrl-C in those first
# milliseconds is Python's own KeyboardInterrupt; from prepare() on it is ours)

# keys a resumed run may change; summary.json's changed_on_resume lists the ones a resume changed. The training
# itself stays bit-identical under each; trainer.device (another device computes differently) and
# trainer.eval_batch_size (validation sums batch by batch) may move the last bits of the numbers after the resume.
# trainer.threads is not among them: torch's CPU reductions split work by thread count.
RESUMABLE_CHANGES = {"resume", "trainer.device", "trainer.eval_batch_size", "log.progress", "log.hist_every"}


def write_json(path: Path, value: dict):
    """Write JSON atomically (checkpoint.atomic_write): a reader sees the old file or the new one, never half."""
    from .checkpoint import atomic_write

    atomic_write(Path(path), (json.dumps(value, indent=2) + "\n").encode())


def read_summary(out: Path) -> dict:
    """A run folder's summary.json ({} when there is none or it cannot be read)."""
    try:
        value = json.loads((Path(out) / "summary.json").read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


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
        import torch

        return {**vars(self), "order": None if self.order is None else self.order.cpu(),
                "losses": torch.stack(self.losses).cpu() if self.losses else torch.zeros(0),
                "correct": int(self.correct), "wall_before": self.wall_before + elapsed}

    @classmethod
    def restore(cls, state: dict, device):
        import torch

        state = dict(state)
        state["losses"] = list(state["losses"].to(device).unbind()) if len(state["losses"]) else []
        state["correct"] = torch.tensor(state["correct"], device=device)
        state["order"] = None if state["order"] is None else state["order"].to(device)
        return cls(**state)


class Diverged(Exception):
    """The loss (or a weight) became NaN or infinite."""


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived; summary.json says so (and a checkpoint was written where there was work to keep)."""

    def __init__(self, message, code):
        super().__init__(message)
        self.code = code


class Stopped(BaseException):
    """SIGINT/SIGTERM outside the training loop (start-up, the final evaluation), raised where it lands: there is
    no step to finish first. A BaseException like KeyboardInterrupt, so that no `except Exception` swallows it."""

    def __init__(self, name: str, code: int):
        super().__init__(name)
        self.signal, self.code = name, code


class StopSignals:
    """SIGINT/SIGTERM, from prepare() (before Hydra) to the end of the command. Inside `deferred()` (the training
    steps and validation) a signal only sets a flag, checked after each step and after each epoch's validation,
    so that the step finishes and a checkpoint is written; elsewhere it raises Stopped at once. A second signal
    while the first is being handled is only recorded."""

    def __init__(self):
        self.signal, self.code, self.defer, self.previous = None, 0, False, {}

    def _handle(self, signum, frame):
        first = self.signal is None
        self.signal, self.code = signal.Signals(signum).name, 128 + signum
        if first and not self.defer and signum in (signal.SIGINT, signal.SIGTERM):
            raise Stopped(self.signal, self.code)  # (another signal passed on to us, Slurm's USR2: only the flag)

    def install(self) -> bool:
        """Take over SIGINT and SIGTERM (main thread only); False when already installed or not possible."""
        if self.previous or threading.current_thread() is not threading.main_thread():
            return False
        self.signal, self.code, self.defer = None, 0, False
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.previous[sig] = signal.signal(sig, self._handle)
        return True

    def uninstall(self):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous = {}

    @contextmanager
    def installed(self):
        mine = self.install()
        try:
            yield self
        finally:
            if mine:
                self.uninstall()

    @contextmanager
    def deferred(self):
        before, self.defer = self.defer, True
        try:
            yield self
        finally:
            self.defer = before


SIGNALS = StopSignals()  # one per process: prepare() installs it, the run reads it, train.cli() hands it back


class Run:
    """One run folder and where the run stands: `Run.open(cfg, out)`, then checkpoint()/finish()."""

    def __init__(self, cfg, out: Path, resumed: dict | None):
        self.cfg, self.out, self.resumed = cfg, Path(out), resumed
        self.progress = Progress()
        self.restored = False  # progress taken from the resumed checkpoint yet
        self.started = time.perf_counter()
        self.stop = SIGNALS
        self.claim = None
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
        """An exclusive lock on the folder for the run's lifetime (the one prepare() took before Hydra started,
        or a new one: sweep jobs, direct calls): a second run or resume of it is refused."""
        from . import distributed

        if distributed.is_main():
            self.claim = claim(self.out)

    def release(self):
        if self.claim is not None and not self.claim.pinned:  # prepare()'s claim is train.cli()'s to hand back
            release(self.out)
        self.claim = None

    @property
    def completed(self) -> bool:
        return read_summary(self.out).get("status") == "completed"

    def find_checkpoint(self):
        from .checkpoint import load_checkpoint
        from .config import flatten, to_plain

        last = self.out / "checkpoints" / "last.pt"
        resume = self.cfg.resume
        if resume is None:
            if (self.out / "summary.json").exists() or last.parent.exists():
                raise UserError(f"hydra.run.dir: {self.out} already holds a run; choose another folder "
                                f"(or continue it: deeprob train resume={_quote(self.out)})")
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
        saved, now = flatten(state["config"]), flatten(to_plain(self.cfg))
        self.changes = {}
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
        from . import distributed
        from .checkpoint import restore_rng

        saved, rng = dict(self.resumed["progress"]), self.resumed["rng"]
        ranks = self.resumed.get("ranks") or [{"rng": rng}]
        if len(ranks) != distributed.world_size():
            raise UserError(f"resume: {self.out} was trained by {len(ranks)} process(es); resume it with the same "
                            f"number (torchrun --nproc_per_node={len(ranks)}) so that it continues exactly")
        own = ranks[distributed.rank()]  # under DDP: this rank's generators and its share of the epoch's steps
        saved.update({k: own[k] for k in ("losses", "correct") if k in own})
        self.progress = Progress.restore(saved, device)
        self.progress.changes.update(getattr(self, "changes", {}))  # stated in summary.json
        self.restored = True
        restore_rng(own["rng"], order, noise)

    def checkpoint_due(self) -> bool:
        """After a step: a stop signal or the trainer.checkpoint_every cadence asks for a checkpoint."""
        from . import distributed

        distributed.share_stop(self.stop)  # a signal to any rank stops all of them at this step
        every = self.cfg.trainer.checkpoint_every
        return bool(self.stop.signal or (every and self.progress.step % every == 0))

    def checkpoint(self, model, state: dict, best: bool = False):
        """checkpoints/last.pt (and best.pt when `best`); refused, as a divergence, when a weight is not finite:
        the last checkpoint is a finite one by construction."""
        import torch

        from . import distributed
        from .checkpoint import first_nonfinite, link_checkpoint, provenance, save_checkpoint
        from .config import to_plain

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
        resume = f"deeprob train resume={_quote(self.out)}"
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
        from . import distributed
        from .checkpoint import provenance

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


# why a key that looks harmless may still not change on resume
NOT_RESUMABLE_BECAUSE = {
    "trainer.threads": "torch splits its CPU reductions by thread count, so the result would no longer be "
                       "bit-identical to an uninterrupted run",
}


def changed(key: str, value, saved) -> str:
    because = f" ({NOT_RESUMABLE_BECAUSE[key]})" if key in NOT_RESUMABLE_BECAUSE else ""
    return (f"resume: {key}={value!r} differs from the run's {saved!r}{because}; a resumed run keeps its "
            f"configuration (it may change: {', '.join(sorted(RESUMABLE_CHANGES))}); start a new run to change it")


def _quote(path) -> str:
    """A path as a shell word (spaces and non-ASCII characters survive a copy and paste)."""
    return shlex.quote(str(path))


def hydra_value(value) -> str:
    """A string as a quoted Hydra override value: any path (spaces, non-ASCII, `=`) reaches Hydra unchanged."""
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


# ---------------------------------------------------------------- run folders owned: claimed before Hydra writes

@dataclass
class Claim:
    """An exclusive flock on FOLDER/.lock, held for as long as the folder's run goes on."""

    folder: Path
    lock: object  # the open .lock file
    created: list  # the folders this process made for it, deepest first (what a refusal removes again)
    pinned: bool = False  # taken by prepare() before Hydra started; handed back by train.cli()


CLAIMS: dict = {}  # resolved folder → Claim, in this process


def claim(folder: Path, created: list | None = None, pinned: bool = False) -> Claim:
    """Lock `folder` (made if missing) for this process; the same folder's existing claim is reused. Stale
    temporary files of killed processes are removed once the lock is held. UserError when another process holds
    it or the folder cannot be made."""
    from .checkpoint import remove_stale_temps

    folder = Path(folder)
    key = _key(folder)
    if key in CLAIMS:
        return CLAIMS[key]
    from .trust import check_entries

    check_entries(folder)  # a link named .lock, train.log, checkpoints/... would carry deeprob's writes outside
    created = list(created or []) + make_folder(folder)
    try:
        lock = open(folder / ".lock", "a")
    except OSError as e:
        _remove_created(created)
        raise UserError(cannot_write(folder, e)) from None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.close()
        raise UserError(f"run folder {folder} is in use by another deeprob process; wait for it to finish or "
                        f"choose another folder") from None
    remove_stale_temps(folder)
    CLAIMS[key] = Claim(folder, lock, created, pinned)
    return CLAIMS[key]


def release(folder: Path):
    """Give up the lock on folder (the .lock file stays: removing it would race with a process about to lock it)."""
    entry = CLAIMS.pop(_key(folder), None)
    if entry is not None:
        entry.lock.close()


def discard(folder: Path):
    """A refused command's folder: remove what this process made in it (when it made the folder), release it."""
    entry = CLAIMS.get(_key(folder))
    if entry is None:
        return
    if entry.created and not (folder / "checkpoints").exists():  # work worth keeping is never removed
        import shutil

        shutil.rmtree(folder / ".hydra", ignore_errors=True)
        for name in ("train.log", "summary.json", ".lock", *(p.name for p in folder.glob("events.out.tfevents.*"))):
            (folder / name).unlink(missing_ok=True)
    release(folder)
    _remove_created(entry.created)


def release_all(discard_created: bool = False):
    """Every claim of this process released (train.cli()'s end); `discard_created`: a command that never ran."""
    for entry in list(CLAIMS.values()):
        discard(entry.folder) if discard_created else release(entry.folder)


def make_folder(folder: Path) -> list:
    """mkdir -p folder; the folders it made, deepest first. UserError (one line) when it cannot be made, after
    removing the parents it did make."""
    missing, probe = [], Path(os.path.abspath(folder))
    while probe != probe.parent:
        try:
            if probe.exists():
                break
        except OSError:  # a name too long to look up: missing as well
            pass
        missing.append(probe)
        probe = probe.parent
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        _remove_created(missing)
        raise UserError(cannot_write(folder, e)) from None
    return missing


def cannot_write(folder: Path, e: OSError) -> str:
    fix = "a shorter name" if e.errno == errno.ENAMETOOLONG else "a folder you can write to"
    return (f"hydra.run.dir: cannot create or write the run folder {folder} ({e.strerror or e}); choose {fix}, "
            f"e.g. hydra.run.dir=runs/NAME")


def _remove_created(created: list):
    for folder in created:  # deepest first; stops at the first one something else has written into
        try:
            Path(folder).rmdir()
        except OSError as e:
            if e.errno not in (errno.ENOENT, errno.ENAMETOOLONG):  # (those were never made)
                break


def _key(folder: Path) -> str:
    return os.path.abspath(folder)


# ---------------------------------------------------------------- before Hydra: the command line's run folder

RUN_FILES = ("summary.json", "checkpoints", "stats.json")  # what makes a folder another run's


def holds_run(folder: Path) -> bool:
    try:
        return any((Path(folder) / name).exists() for name in RUN_FILES)
    except OSError:  # a name too long to look up holds nothing; creating it says why it cannot be used
        return False


def _record_folder(job_dir: str):
    """hydra.output_subdir of a re-run sweep's job: none where the folder already holds a run."""
    return None if holds_run(Path(job_dir)) else ".hydra"


def register_resolver():
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("deeprob_record"):
        OmegaConf.register_new_resolver("deeprob_record", _record_folder)


def holds_sweep(folder: Path) -> bool:
    try:
        return any(holds_run(job) for job in Path(folder).iterdir() if job.is_dir())
    except OSError:
        return False


def prepare(command: str, config_name: str, args: list) -> list:
    """The arguments to hand Hydra, after the checks that must come before it writes anything: the command line
    composed and validated (a mistake is one line, exit 2, no folder), the run-folder policy (an existing run is
    never written into except to continue it: resume=RUN_DIR, or resume=auto on an unfinished run), and, for
    `train`, the stop signals taken over and the run folder claimed: pinned to a folder of its own (the default
    pattern gets a -1, -2, ... suffix when two runs start in the same second) and locked, so that a second
    process on it is refused before Hydra writes its .hydra/ there."""
    if command != "train":
        return _prepare(command, config_name, args)
    SIGNALS.install()
    try:
        return _prepare(command, config_name, args)
    except Stopped as e:
        release_all(discard_created=True)
        SIGNALS.uninstall()
        import sys

        print(f"deeprob {command}: interrupted: {e.signal} during start-up; nothing was run", file=sys.stderr)
        raise SystemExit(e.code) from None
    except BaseException:
        release_all(discard_created=True)
        SIGNALS.uninstall()
        raise


def _prepare(command: str, config_name: str, args: list) -> list:
    from .config import precheck

    resume, run_dir, sweep_dir = _value(args, "resume"), _value(args, "hydra.run.dir"), _value(args, "hydra.sweep.dir")
    multirun = any(a in ("-m", "--multirun") for a in args)
    for key, value in (("hydra.run.dir", run_dir), ("hydra.sweep.dir", sweep_dir)):
        if value is not None and "${" not in value:  # quoted for Hydra: spaces and non-ASCII characters pass
            args = _with(args, key, value)
    if resume not in (None, "null", "auto"):
        return resume_args(command, args, Path(resume))  # checked against the checkpoint's own config when the run opens
    precheck(args, config_name)
    if not multirun and run_dir is not None and holds_run(Path(run_dir)):
        if resume != "auto":
            raise UserError(f"hydra.run.dir: {run_dir} already holds a run; choose another folder"
                            + (f" (or continue it: deeprob train resume={_quote(run_dir)})" if command == "train"
                               else ""))
        args = [*args, "hydra.output_subdir=null"]  # continue it, keeping the run's own .hydra/ record
    if multirun and sweep_dir is not None and holds_sweep(Path(sweep_dir)):
        if resume != "auto":
            raise UserError(f"hydra.sweep.dir: {sweep_dir} already holds a sweep's runs; choose another folder (or "
                            f"continue its unfinished jobs, skipping the completed ones: add resume=auto)")
        # a job folder that already holds a run keeps its own .hydra/ record (Hydra writes it before train runs)
        args = [*args, "hydra.output_subdir='${deeprob_record:${hydra.runtime.output_dir}}'"]
    if command != "train" or _launched():
        return args  # init-stats keeps its own folder rules; under torchrun rank 0's clock names the folder
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    given = sweep_dir if multirun else run_dir
    if given is not None and "${" in given:
        return args  # a pattern of the user's own: Hydra fills it in
    if given is None:
        folder, created = fresh_folder(_pattern(config_name, "sweep" if multirun else "run"))
        claim(folder, created, pinned=True)
    else:
        folder = Path(given)
        claim(folder, pinned=True)
    return _with(args, key, str(folder))


def _launched() -> bool:
    """Under torchrun, or in a Slurm step of several tasks (srun --ntasks=N): then each process is a DDP rank,
    rank 0's clock names the one run folder and no rank claims it here."""
    if "SLURM_STEP_ID" in os.environ and "SLURM_PROCID" in os.environ:
        from . import distributed

        distributed.from_slurm()  # sets torchrun's variables from Slurm's when the step has several tasks
    return all(name in os.environ for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"))


def fresh_folder(path: str) -> tuple:
    """(folder, folders made) for a new run: `path`, or path-1, path-2, ... when it exists; mkdir is atomic, so
    two processes starting in the same second get two folders."""
    base = Path(path)
    made = make_folder(base.parent)
    for n in range(10_000):
        folder = base if n == 0 else base.with_name(f"{base.name}-{n}")
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        except OSError as e:
            _remove_created(made)
            raise UserError(cannot_write(folder, e)) from None
        return folder, [folder, *made]
    raise UserError(f"hydra.run.dir: {base} and 10000 numbered variants exist; choose a folder")


def _pattern(config_name: str, mode: str) -> str:
    """conf/<config>.yaml's hydra.<mode>.dir with ${now:FORMAT} filled in from this moment."""
    from datetime import datetime

    from omegaconf import OmegaConf

    from . import CONFIG_DIR

    pattern = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / f"{config_name}.yaml").hydra, resolve=False)[mode]["dir"]
    now = datetime.fromtimestamp(time.time())
    return re.sub(r"\$\{now:([^}]*)\}", lambda m: now.strftime(m.group(1)), pattern)


def _value(args: list, key: str):
    """The value of override `key=...` on the command line (Hydra's quoting removed), or None."""
    line = next((a for a in args if a.startswith(f"{key}=")), None)
    if line is None:
        return None
    raw = line.split("=", 1)[1]
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        raw = raw[1:-1].replace(f"\\{raw[0]}", raw[0]).replace("\\\\", "\\")
    return raw


def _with(args: list, key: str, value: str) -> list:
    """args with `key=value` (quoted for Hydra) in place of the user's, before the first override (Hydra takes
    the overrides as one contiguous run)."""
    args = [a for a in args if not a.startswith(f"{key}=")]
    first = next((i for i, a in enumerate(args) if "=" in a and not a.startswith("-")), len(args))
    return [*args[:first], f"{key}={hydra_value(value)}", *args[first:]]


def _saved_choices(run: Path) -> dict:
    """{group: option} the run was composed with (its .hydra/hydra.yaml), lists as "a,b"."""
    from omegaconf import OmegaConf

    try:
        choices = OmegaConf.to_container(OmegaConf.load(run / ".hydra" / "hydra.yaml").hydra.runtime.choices)
    except Exception:
        return {}
    return {k: ",".join(map(str, v)) if isinstance(v, list) else str(v) for k, v in choices.items()}


def resume_args(command: str, args: list, run: Path) -> list:
    """`resume=RUN_DIR`: compose from that run's saved config, write into its folder (claimed), leave its .hydra/
    as it is. A group choice (`model=mlp`) is refused here: a resumed run keeps its configuration."""
    from . import CONFIG_DIR

    saved = run / ".hydra" / "config.yaml"
    try:
        is_run = saved.is_file()
    except OSError:
        is_run = False
    if not is_run:
        raise UserError(f"resume: {run} is not a run folder (no .hydra/config.yaml); pass the folder of the run "
                        f"to continue")
    chosen = _saved_choices(run)
    for line in list(args):
        key = line.split("=", 1)[0].lstrip("+~")
        if "=" in line and not line.startswith("-") and (CONFIG_DIR / key).is_dir():
            if _value(args, key).strip("[]").replace(" ", "") == chosen.get(key):
                args = [a for a in args if a != line]  # the run's own choice: nothing changes
                continue
            raise UserError(f"resume: {line} chooses another option; a resumed run keeps its configuration (it may "
                            f"change: {', '.join(sorted(RESUMABLE_CHANGES))}); start a new run to change it")
    if any(a in ("-m", "--multirun") for a in args):
        raise UserError("resume: continues one run; to continue a sweep's unfinished jobs run the sweep again with "
                        "hydra.sweep.dir=SWEEP_DIR resume=auto")
    from .trust import trusted_record

    record = trusted_record(saved)  # a run folder is data: Hydra composes a checked copy, never the folder's files
    if command == "train" and not _launched():
        claim(run, pinned=True)
    args = _with(_with(args, "resume", str(run)), "hydra.run.dir", str(run))
    return [f"--config-dir={record}", "--config-name=config", "hydra.output_subdir=null", *args]


def hydra_quote(path) -> str:
    """A path as one value of a Hydra override (sweep jobs are named key=value, which Hydra would misread)."""
    return hydra_value(path)
