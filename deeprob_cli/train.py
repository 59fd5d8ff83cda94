"""The one Hydra entry point: `deeprob train [overrides]` (same as `python -m deeprob_cli.train [overrides]`).

    deeprob train activation=gelu init=kaiming augment=[flip,crop] regularizer=[l2]
    deeprob train -m activation=relu,tanh dataset=synthetic      # a sweep: runs/multirun/<date>/<time>/<job>

Reads top to bottom: check config → device + seed → data (uint8 tensors) → preprocessing fitted on train →
model from the groups → init → optimizer + schedule → loop (TensorBoard, checkpoint per epoch) → summary.json.
"""
import json
import logging
import os
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import hydra
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from . import UserError, distributed, init_stats
from .checkpoint import link_checkpoint, load_checkpoint, provenance, restore_rng, rng_state, save_checkpoint
from .components.activation import materialize
from .components.augment import compose, log_examples
from .components.regularizer import apply_to_model, batch_mixer, loss_function
from .config import CONFIG_DIR, build, check, flatten, selected, to_plain
from .data import load_data
from .evaluate import evaluate, final_scores
from .monitor import Monitor
from .speed import Speed

log = logging.getLogger("deeprob")


@hydra.main(config_path=str(CONFIG_DIR), config_name="train", version_base="1.3")
def main(cfg: DictConfig):
    """Train once; return the final validation accuracy (what a Hydra sweeper maximizes)."""
    hydra_cfg = HydraConfig.get()
    out = Path(hydra_cfg.runtime.output_dir)
    sweep = hydra_cfg.mode == RunMode.MULTIRUN
    set_threads(cfg.trainer.threads,
                (OmegaConf.select(hydra_cfg, "launcher.n_jobs") if sweep else None) or distributed.threads_per_process())
    try:
        if cfg.task != "train":
            return init_stats.run(cfg, out)
        return train(cfg, out, choices=group_choices(cfg, hydra_cfg.runtime.choices), sweep=sweep)
    except UserError as e:
        print(f"deeprob {str(cfg.task).replace('_', '-')}: error: {e}", file=sys.stderr)
        if not sweep:
            sys.exit(2)
        write_json(out / "summary.json", {"status": "failed", "error": str(e)})  # the sweep goes on
    except Diverged as e:  # summary.json already says so; in a sweep the other jobs go on
        print(f"deeprob train: diverged: {e}", file=sys.stderr)
        if not sweep:
            sys.exit(3)
    except Interrupted as e:  # Ctrl-C or a scheduler's pre-emption: stop the whole sweep too
        print(f"deeprob train: interrupted: {e}", file=sys.stderr)
        sys.exit(e.code)
    except Exception as e:
        if not sweep:
            raise
        log.exception("job failed")  # the traceback goes to this job's train.log; the sweep goes on
        write_json(out / "summary.json", {"status": "failed", "error": f"{type(e).__name__}: {e}"})
    return None


def train(cfg: DictConfig, out: Path, choices: dict, sweep: bool = False):
    check(cfg, choices)
    if cfg.resume == "auto" and read_status(out) == "completed":
        log.info("resume=auto: %s already completed; nothing to do", out)
        return json.loads((out / "summary.json").read_text()).get("val_acc")
    resumed = resume_from(cfg, out)
    started = time.perf_counter()
    device = distributed.device(pick_device(cfg.trainer.device))  # under torchrun: cuda:LOCAL_RANK
    speed = Speed(cfg.trainer, device)  # precision (bf16 autocast), channels_last, compile
    seed_everything(cfg.trainer.seed)

    # components that need no data are built first, so a bad parameter fails before any work
    activation = build(cfg.activation, "activation")
    build(cfg.activation, "activation", _partial_=False)  # one instance now: a bad activation.* value fails here
    initialize = build(cfg.init, "init")
    augment = compose(build(node, f"augment.{name}") for name, node in selected(cfg, "augment").items())
    regularizers = [build(node, f"regularizer.{name}") for name, node in selected(cfg, "regularizer").items()]
    tta = build(cfg.tta, "tta")

    # data: whole splits as uint8 tensors on the training device; statistics from the training split only
    data = load_data(cfg.dataset)
    preprocess = build(cfg.preprocess, "preprocess").fit(data.train.images).to(device)
    train_split = move(data.train, device)
    augment.fit(data.train.images)  # options with training statistics (pca_color)

    # model from the groups, then its initialization (Kaiming's gain follows the chosen activation)
    model = build(cfg.model, "model", in_shape=preprocess.output_shape(data.shape), num_classes=len(data.classes),
                  activation=activation)
    apply_to_model(regularizers, model, activation())  # dropout, dropconnect, fractional pooling, stochastic depth
    first_batch = preprocess(train_split.images[: cfg.trainer.batch_size].float().div(255))
    materialize(model, first_batch.cpu())  # per-channel PReLU: α takes its size from the data
    initialize(model, activation=activation(), batch=first_batch.cpu())
    model.to(device)
    forward = speed.prepare(model)  # the model in its memory layout, compiled when asked
    net = distributed.wrap(forward, cfg.trainer.sync_bn, cfg.trainer.seed)  # DDP under torchrun, else unchanged
    params = sum(p.numel() for p in model.parameters())
    log.info("%s: %d parameters, %d train / %d val images of shape %s, device %s", type(model).__name__, params,
             len(data.train), len(data.val or []), data.shape, device)

    batch_size = min(cfg.trainer.batch_size, len(data.train))
    effective_batch = distributed.effective_batch(batch_size, len(data.train))  # batch_size × processes
    steps_per_epoch = len(data.train) // effective_batch  # the last incomplete batch is dropped
    optimizer = build(cfg.optim, "optim", params=model.parameters())
    schedule = build(cfg.schedule, "schedule", optimizer=optimizer, total_steps=cfg.trainer.epochs * steps_per_epoch)
    order = torch.Generator().manual_seed(cfg.trainer.seed)  # data order
    noise = torch.Generator(device).manual_seed(distributed.rank_seed(cfg.trainer.seed + 1))  # augmentation draws

    progress = Progress()
    if resumed:
        model.load_state_dict(resumed["model"])
        optimizer.load_state_dict(resumed["optimizer"])
        schedule.load_state_dict(resumed["schedule"])
        progress = Progress.restore(resumed["progress"], device)
        restore_rng(resumed["rng"], order, noise)
        log.info("resumed %s at epoch %d, step %d", out, progress.epoch, progress.step)
    # on resume, TensorBoard drops whatever the interrupted run logged after its checkpoint's step
    monitor = (Monitor(out, model, activation, cfg.log.hist_every, purge_step=progress.step if resumed else None)
               if distributed.is_main() else distributed.Silent())  # only rank 0 writes
    if not resumed and distributed.is_main():
        monitor.hparams({**{k: ",".join(v) if isinstance(v, list) else v for k, v in choices.items()},
                         "optim.lr": cfg.optim.lr, "trainer.batch_size": batch_size,
                         "trainer.epochs": cfg.trainer.epochs, "trainer.seed": cfg.trainer.seed})
        log_examples(monitor.writer, train_split.images[:8], augment, cfg.trainer.seed + 2)
        overrides = HydraConfig.get().overrides.task if HydraConfig.initialized() else []  # tboard: the Text tab
        monitor.text(OmegaConf.to_yaml(cfg, resolve=True), " ".join(["deeprob train", *overrides]))
    mix, criterion = batch_mixer(regularizers, len(data.classes)), loss_function(regularizers)
    show = cfg.log.progress is True or (cfg.log.progress == "auto" and not sweep and sys.stderr.isatty())

    def checkpoint():
        if not distributed.is_main():
            return
        save_checkpoint(out / "checkpoints" / "last.pt", {
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
            "preprocess": preprocess.state_dict(), "classes": list(data.classes), "input_shape": list(data.shape),
            "config": to_plain(cfg), "choices": choices, "progress": progress.state(time.perf_counter() - started),
            "rng": rng_state(order, noise), "provenance": provenance()})

    def finish(status: str, **extra) -> dict:
        record = {"status": status, "epochs_completed": progress.epoch - 1, "steps": progress.step,
                  **progress.metrics, **extra, "seconds": progress.wall_before + time.perf_counter() - started,
                  "train_seconds": progress.train_seconds,
                  "images_per_second": progress.images / max(progress.train_seconds, 1e-9),
                  "device": str(device), **speed.record(), "params": params, "batch_size": batch_size,
                  "seed": cfg.trainer.seed, "world_size": distributed.world_size(),
                  "effective_batch_size": effective_batch, "choices": choices, **provenance()}
        if distributed.is_main():
            write_json(out / "summary.json", record)
        monitor.finish(status, record, progress.step)  # tboard: final/<key> scalars, HParams status; closes
        return record

    with StopSignals() as stop:
        while progress.epoch <= cfg.trainer.epochs:
            if progress.order is None:
                progress.order = torch.randperm(len(data.train), generator=order).to(device)
            net.train()
            tick = time.perf_counter()
            bar = tqdm(range(progress.index, steps_per_epoch), desc=f"epoch {progress.epoch}/{cfg.trainer.epochs}",
                       disable=not show, initial=progress.index, total=steps_per_epoch)
            for i in bar:
                index = distributed.shard(progress.order[i * effective_batch:(i + 1) * effective_batch])
                x = speed.layout(preprocess(augment(train_split.images[index].float().div_(255), noise)))
                y = train_split.labels[index]
                x, targets, y = mix(x, y, noise, progress.step)  # cutout, mixup, cutmix; y: each target's dominant label
                snapshot = monitor.due(progress.step, last_of_epoch=i == steps_per_epoch - 1)
                if snapshot:
                    monitor.snapshot()
                with speed.autocast():
                    logits = net(x)
                    loss = criterion(logits, targets)  # cross-entropy, label-smoothed when selected
                total = loss + sum(r.penalty(model) for r in regularizers if hasattr(r, "penalty"))
                if not distributed.all_finite(total):  # stop at once (every rank): later steps would be wasted
                    progress.train_seconds += time.perf_counter() - tick
                    message = (f"loss became {total.item()} at step {progress.step} (last finite loss "
                               f"{progress.last_loss}); lower optim.lr or pick another init= / schedule=; the last "
                               f"good checkpoint is kept in {out / 'checkpoints'}")
                    finish("diverged", step=progress.step, last_finite_loss=progress.last_loss, error=message)
                    raise Diverged(message)
                optimizer.zero_grad(set_to_none=True)
                total.backward()
                optimizer.step()
                for r in regularizers:
                    if hasattr(r, "after_step"):
                        r.after_step(model, optimizer.param_groups[0]["lr"])
                schedule.step()
                if snapshot:
                    monitor.log_snapshot(progress.step)
                progress.advance(loss.detach(), (logits.argmax(1) == y).sum(), effective_batch)
                if show and i % 20 == 0:
                    bar.set_postfix(loss=f"{progress.last_loss:.3f}")
                distributed.share_stop(stop)  # a signal to any rank stops all of them at this step
                if stop.signal or (cfg.trainer.checkpoint_every and progress.step % cfg.trainer.checkpoint_every == 0):
                    progress.train_seconds += time.perf_counter() - tick
                    tick = time.perf_counter()
                    checkpoint()
                if stop.signal:
                    resume = f"deeprob train resume={out}"
                    finish("interrupted", signal=stop.signal, resume=resume)
                    raise Interrupted(f"{stop.signal} at step {progress.step}: checkpoint saved; continue with: {resume}",
                                      stop.code)
            progress.train_seconds += time.perf_counter() - tick

            # end of epoch: per-step losses, epoch metrics, validation, checkpoint (and best.pt)
            progress.losses, progress.correct = distributed.mean(progress.losses), distributed.total(progress.correct)
            monitor.step_losses(progress.step - len(progress.losses), progress.losses)
            metrics = {"train/acc": progress.correct.item() / (len(progress.losses) * effective_batch),
                       "lr": optimizer.param_groups[0]["lr"]}
            if data.val is not None:
                metrics["val/loss"], metrics["val/acc"] = evaluate(speed.wrap(model), data.val, preprocess, device,
                                                                   cfg.trainer.eval_batch_size)
            monitor.scalars(metrics, progress.step)
            train_loss = torch.stack(progress.losses).mean().item()
            log.info("epoch %d/%d  train/loss %.4g  %s  (%.1f s)", progress.epoch, cfg.trainer.epochs, train_loss,
                     "  ".join(f"{k} {v:.4g}" for k, v in metrics.items()), time.perf_counter() - tick)
            improved = progress.end_epoch(train_loss, metrics)
            checkpoint()
            if improved and distributed.is_main():
                link_checkpoint(out / "checkpoints" / "last.pt", out / "checkpoints" / "best.pt")

    scores = final_scores(speed.wrap(model), data, preprocess, device, cfg.trainer.eval_batch_size, tta,
                          val_acc=progress.metrics.get("val_acc"))
    summary = finish("completed", **scores, **distributed.checksums(model))
    log.info("done: val_acc %s, %.0f images/s, summary in %s", summary["val_acc"], summary["images_per_second"], out)
    return summary["val_acc"] if summary["val_acc"] is not None else summary["train_acc"]


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
    """The loss became NaN or infinite."""


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


def read_status(out: Path):
    path = out / "summary.json"
    return json.loads(path.read_text()).get("status") if path.is_file() else None


# keys a resumed run may change; everything else must match the checkpoint's configuration
RESUMABLE_CHANGES = {"resume", "trainer.device", "trainer.threads", "trainer.eval_batch_size", "log.progress",
                     "log.hist_every"}


def resume_from(cfg: DictConfig, out: Path):
    """The checkpoint to continue from (resume=RUN_DIR or resume=auto), or None for a fresh run."""
    last = out / "checkpoints" / "last.pt"
    if cfg.resume is None:
        if (out / "summary.json").exists() or last.parent.exists():
            raise UserError(f"hydra.run.dir: {out} already holds a run; choose another folder "
                            f"(or continue it: deeprob train resume={out})")
        return None
    if not last.is_file():
        if cfg.resume == "auto":
            return None
        raise UserError(f"resume: {out} holds no checkpoints/last.pt; a run can be resumed once it has saved one")
    if read_status(out) == "completed":
        raise UserError(f"resume: {out} already completed; start a new run instead")
    state = load_checkpoint(last)
    saved, now = flatten(state["config"]), flatten(to_plain(cfg))
    for key in sorted(set(saved) | set(now)):
        if saved.get(key) != now.get(key) and key not in RESUMABLE_CHANGES:
            raise UserError(f"resume: {key}={now.get(key)!r} differs from the run's {saved.get(key)!r}; a resumed run "
                            f"keeps its configuration (it may change: {', '.join(sorted(RESUMABLE_CHANGES))})")
    return state


def group_choices(cfg: DictConfig, runtime_choices) -> dict:
    """The option chosen in every config group; multi-select groups as a list of names."""
    choices = {k: v for k, v in runtime_choices.items() if not k.startswith("hydra") and "/" not in k}
    for group in ("augment", "regularizer"):
        choices[group] = list(selected(cfg, group))
    return choices


def set_threads(threads, n_jobs):
    """torch's CPU threads: as asked, else the cores shared out among a parallel launcher's jobs."""
    if threads is None and n_jobs:
        cores = os.cpu_count() or 1
        threads = max(1, cores // (cores if n_jobs < 0 else n_jobs))
    if threads:
        torch.set_num_threads(threads)


def pick_device(name: str) -> torch.device:
    """auto = the first CUDA device when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int):
    """Seed python, numpy and torch so that two CPU runs with one seed compute the same numbers."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def move(split, device):
    from .data import Split

    return Split(split.images.to(device), split.labels.to(device))


def write_json(path: Path, value: dict):
    path.write_text(json.dumps(value, indent=2) + "\n")


if __name__ == "__main__":
    distributed.setup()  # under torchrun: process group, one run folder for all ranks
    main()
