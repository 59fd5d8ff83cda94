"""The one Hydra entry point: `deeprob train [overrides]` (same as `python -m deeprob_cli.train [overrides]`).

    deeprob train activation=gelu init=kaiming augment=[flip,crop] regularizer=[l2]
    deeprob train -m activation=relu,tanh dataset=synthetic      # a sweep: runs/multirun/<date>/<time>/<job>

Reads top to bottom: check config → device + seed → data (uint8 tensors) → preprocessing fitted on train →
model from the groups → init → optimizer + schedule → loop (TensorBoard, checkpoint per epoch) → summary.json.
"""
import contextlib
import logging
import os
import random
import shlex
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import hydra
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from . import LAUNCHED, UserError, distributed
from .assemble import assemble
from .checkpoint import rng_state
from .components.augment import Compose, compose, log_examples
from .components.average import EMA, Lookahead, Plain
from .components.optim import param_groups
from .components.preprocess import Preprocess
from .components.regularizer import Regularizers
from .config import CONFIG_DIR, build, check, selected, smallest_image
from .data import Data, Split, load_data
from .evaluate import evaluate, final_scores
from .exits import SIGNALS, Diverged, Interrupted, Stopped, report, unexpected
from .folders import discard, read_summary, register_resolver, release_all, shell_quote, write_json
from .monitor import LINK, Monitor, final_metrics, overridden_numbers
from .naming import jobs_in_sweep, swept_keys
from .run import Run
from .speed import Speed, pick_device
from .trust import resumed_data
from .threads import busy_cores, register as register_run, share as share_threads

log = logging.getLogger("deeprob")
register_resolver()  # ${deeprob_record:...} (launch.prepare, for sweeps re-run into their folder)


@hydra.main(config_path=str(CONFIG_DIR), config_name="train", version_base="1.3")
def main(cfg: DictConfig):
    """Train once; return the final validation accuracy (what a Hydra sweeper maximizes).

    Every way a run can end is one line on stderr and an exit code from exits.EXITS (end_job); 0 completed."""
    hydra_cfg = HydraConfig.get()
    out = Path(hydra_cfg.runtime.output_dir)
    sweep = hydra_cfg.mode == RunMode.MULTIRUN
    set_threads(cfg.trainer.threads,
                (OmegaConf.select(hydra_cfg, "launcher.n_jobs") if sweep else None) or distributed.threads_per_process())
    if sweep:
        total = jobs_in_sweep(hydra_cfg.sweep.dir)
        log.info("job %d%s: %s", hydra_cfg.job.num + 1, f" of {total}" if total else "", out.name)
    try:
        return train(cfg, out, choices=group_choices(cfg, hydra_cfg.runtime.choices), sweep=sweep)
    except (Exception, Stopped) as e:
        return end_job(e, out, sweep)


def end_job(error: BaseException, out: Path, sweep: bool):
    """A job that raised `error`: its one line and exit code (exits.EXITS). A refused fresh run leaves no folder
    behind; in a sweep the other jobs go on (None: a sweeper records the trial as failed), except after a signal."""
    if unexpected(error) and full_error():
        raise error
    hint = ""
    if isinstance(error, (UserError, Diverged, Interrupted)):
        log_to_file(error)  # the console shows it once, from report() below
    elif isinstance(error, OSError):  # a full disk, a folder turned read-only: what was written before is intact
        error.filename = error.filename or out
        if (out / "checkpoints" / "last.pt").is_file():
            hint = f"; then continue with: deeprob train resume={shell_quote(out)}"
    elif unexpected(error):
        with contextlib.suppress(OSError), open(out / "train.log", "a") as f:  # the traceback, for a bug report
            traceback.print_exception(error, file=f)
        hint = f" (the traceback is in {out / 'train.log'}; HYDRA_FULL_ERROR=1 prints it here)"
    code = report("train", error, hint)
    if isinstance(error, Stopped) or (isinstance(error, UserError) and not sweep):
        discard(out)  # before the run folder was opened, or refused: nothing to keep
    elif isinstance(error, UserError) and not (out / "summary.json").exists():  # never replace another run's record
        write_json(out / "summary.json", {"status": "failed", "error": str(error)})
    if not sweep or isinstance(error, (Interrupted, Stopped)):  # Ctrl-C or a pre-emption stops the whole sweep
        sys.exit(code)
    return None


def full_error() -> bool:
    """HYDRA_FULL_ERROR=1 as the user set it (cli() sets it for Hydra's start-up so that we report, not Hydra)."""
    return (os.environ.get("HYDRA_FULL_ERROR") if _USER_FULL_ERROR is None else _USER_FULL_ERROR) == "1"


_USER_FULL_ERROR = None


def train(cfg: DictConfig, out: Path, choices: dict, sweep: bool = False):
    """Train one configuration into run folder `out`; the final val accuracy (train accuracy without val)."""
    with SIGNALS.installed():  # already, when `deeprob train` went through launch.prepare()
        check(cfg)
        if cfg.resume is None and distributed.requeued():  # [slurm, issue 19] a job Slurm restarted (pre-emption,
            cfg.resume = "auto"  # submitit's time-limit requeue) continues its own run from its own checkpoint
        run = Run.open(cfg, out)  # refuses another run's folder, finds the checkpoint to resume, locks the folder
        job = None
        try:
            if cfg.resume == "auto" and run.completed:
                log.info("resume=auto: %s already completed; nothing to do", out)
                return read_summary(out).get("val_acc")
            job = build_job(cfg, run, choices, sweep)
            with run.stop.deferred():  # a signal now finishes the step (or the validation), then checkpoints
                while run.progress.epoch <= cfg.trainer.epochs:
                    train_epoch(job, run)
                    end_epoch(job, run)
                    if run.stop.signal:  # arrived during validation: the epoch's checkpoint is written
                        raise run.interrupted(during="validation")
            return finish(job, run)
        except Stopped:
            with run.stop.deferred():
                raise run.interrupted(during="start-up" if job is None else "the final evaluation") from None
        except (UserError, Diverged, Interrupted):
            raise
        except Exception as e:
            with run.stop.deferred():
                run.failed(f"{type(e).__name__}: {e}")
            raise
        finally:
            if job is not None:  # TensorBoard: final scalars, the status for HParams, the reason in the Text tab
                summary = run.summary or {"status": "failed"}
                with contextlib.suppress(Exception), run.stop.deferred():
                    # the losses not yet written, however the run ends; averaged over the ranks, which all end here
                    # together except after one rank's error (where the average would wait forever)
                    if summary["status"] != "failed" or not distributed.active():
                        log_losses(job, run)
                with contextlib.suppress(Exception), run.stop.deferred():
                    job.monitor.finish(summary["status"], summary, run.progress.step)
            run.release()


def train_epoch(job: "Job", run: Run):
    """The steps of one epoch (from where a resumed run left off), with checkpoints when due."""
    p = run.progress
    if p.order is None:
        p.order = torch.randperm(len(job.train), generator=job.order).to(job.device)
    if hasattr(job.preprocess, "set_epoch"):  # patch_whiten's bias: trained in its first epochs only
        job.preprocess.set_epoch(p.epoch)
    job.net.train()
    run.start_epoch()
    bar = tqdm(range(p.index, job.steps_per_epoch), desc=f"epoch {p.epoch}/{job.cfg.trainer.epochs}",
               disable=not job.show, initial=p.index, total=job.steps_per_epoch)
    for i in bar:
        train_step(job, run, last_of_epoch=i == job.steps_per_epoch - 1)
        if job.show and i % 20 == 0:
            bar.set_postfix(loss=f"{p.last_loss:.3f}")
        # not at the epoch's last step (end_epoch's checkpoint follows at once) unless a signal asks: a checkpoint
        # then would precede the epoch's values logged at that step, and a resume from it would log them twice
        if run.checkpoint_due() and (run.stop.signal or i < job.steps_per_epoch - 1):
            run.lap()
            log_losses(job, run)
            run.checkpoint(job.average.model, job.state())
            if run.stop.signal:
                raise run.interrupted()
    run.lap()


def train_step(job: "Job", run: Run, last_of_epoch: bool):
    """One optimizer step on the next batch: gather, augment, preprocess, mix, forward, loss, backward, step."""
    p, eb = run.progress, job.effective_batch
    index = distributed.shard(p.order[p.index * eb:(p.index + 1) * eb])
    x = job.train.images[index].float().div_(255)
    x = job.speed.layout(job.preprocess(job.augment(x, job.noise, indices=index, epoch=p.epoch)))
    x, targets, y = job.regularizers.mix(x, job.train.labels[index], job.noise, p.step)  # y: dominant labels
    snapshot = job.monitor.due(p.step, last_of_epoch=last_of_epoch)
    if snapshot:
        job.monitor.snapshot()
    with job.speed.autocast():
        logits = job.net(x)
        loss = job.regularizers.loss(logits, targets)  # cross-entropy, label-smoothed when selected
    total = loss + job.regularizers.penalty(job.model)
    if not distributed.all_finite(total):  # stop at once (every rank): later steps would be wasted
        run.lap()
        raise run.diverged(f"loss became {total.item()} at step {p.step}")
    job.optimizer.zero_grad(set_to_none=True)
    total.backward()
    job.optimizer.step()
    job.regularizers.after_step(job.model, job.optimizer.param_groups[0]["lr"])
    job.average.update(p.step + 1)  # the averaged weights (average=ema|lookahead) follow the step
    job.schedule.step()
    if snapshot:
        job.monitor.log_snapshot(p.step)
    p.advance(loss.detach(), (logits.argmax(1) == y).sum(), eb)


def end_epoch(job: "Job", run: Run):
    """Per-step losses and epoch metrics to TensorBoard, validation, the checkpoint (and best.pt)."""
    p = run.progress
    p.correct = distributed.total(p.correct)
    log_losses(job, run)
    metrics = {"train/acc": p.correct.item() / (len(p.losses) * job.effective_batch),
               "lr": job.optimizer.param_groups[0]["lr"]}
    if job.data.val is not None:
        metrics["val/loss"], metrics["val/acc"] = evaluate(job.speed.wrap(job.average.model), job.data.val, job.preprocess,
                                                           job.device, job.cfg.trainer.eval_batch_size)
    # logged at the epoch's last step: a resume purges TensorBoard from the checkpoint's step on and keeps these
    job.monitor.scalars(metrics, p.step - 1)
    train_loss = torch.stack(p.losses).mean().item()
    log.info("epoch %d/%d  train/loss %.4g  %s  (%.1f s)", p.epoch, job.cfg.trainer.epochs, train_loss,
             "  ".join(f"{k} {v:.4g}" for k, v in metrics.items()), run.epoch_seconds())
    improved = p.end_epoch(train_loss, metrics)
    flush(job)
    run.checkpoint(job.average.model, job.state(), best=improved)


def log_losses(job: "Job", run: Run):
    """train/loss of this epoch's steps not yet in TensorBoard (averaged over the ranks), flushed to the event
    file. Called before every checkpoint, so that what TensorBoard holds below a checkpoint's step is complete
    and everything logged after it lies at or above that step: a resume purges from the checkpoint's step and
    logs every step exactly once, after any number of interruptions."""
    p = run.progress
    new = distributed.mean(p.losses[p.logged:])
    p.losses[p.logged:] = new
    if new:
        job.monitor.step_losses(p.step - len(p.losses) + p.logged, new)
    p.logged = len(p.losses)
    flush(job)


def flush(job: "Job"):
    """What TensorBoard was given reaches the event file (before a checkpoint that counts on it)."""
    if distributed.is_main():  # rank 0's Monitor; the other ranks write nothing
        job.monitor.flush()


def finish(job: "Job", run: Run):
    """Final scores (with test-time augmentation) into summary.json; the value a sweeper maximizes."""
    scores = final_scores(job.speed.wrap(job.average.model), job.data, job.preprocess, job.device,
                          job.cfg.trainer.eval_batch_size, job.tta, val_acc=run.progress.metrics.get("val_acc"))
    with run.stop.deferred():  # a signal from here on no longer changes the outcome
        summary = run.finish("completed", **scores, **distributed.checksums(job.average.model))
    log.info("done: %s; %.0f s, %.0f images/s; summary.json, checkpoints and TensorBoard events in %s",
             ", ".join(f"{name} {percent(summary.get(f'{name}_acc'))}" + (
                 f" ({percent(summary[f'{name}_acc_tta'])} with tta)"
                 if summary.get(f"{name}_acc_tta") not in (None, summary.get(f"{name}_acc")) else "")
                 for name in ("train", "val", "test") if summary.get(f"{name}_acc") is not None),
             summary["seconds"], summary["images_per_second"], run.out)
    return summary["val_acc"] if summary["val_acc"] is not None else summary["train_acc"]


@dataclass(kw_only=True)
class Job:
    """Everything a training run computes with, assembled once (build_job) and read by the loop."""

    cfg: DictConfig
    choices: dict  # the option chosen in every group (multi-select groups: a list)
    device: torch.device
    speed: Speed
    data: Data  # train/val/test splits, classes, shape
    train: Split  # the training split on the training device
    preprocess: Preprocess  # fitted on the training split
    augment: Compose  # the selected augment options, applied in order
    model: torch.nn.Module
    net: torch.nn.Module  # what a step calls: the model in its memory layout, compiled, DDP-wrapped as asked
    regularizers: Regularizers  # the selection behind its five hooks
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LRScheduler
    order: torch.Generator  # data order
    noise: torch.Generator  # augmentation draws
    monitor: Monitor | distributed.Silent  # TensorBoard on rank 0, nothing elsewhere
    tta: Callable  # test-time augmentation (components.tta)
    average: Plain | EMA | Lookahead  # the evaluated weights (.model), update() after each step
    effective_batch: int  # images per step over all processes
    steps_per_epoch: int
    show: bool  # progress bars

    def state(self) -> dict:
        """What a checkpoint holds besides the run's progress and config."""
        return {"model": self.average.model.state_dict(), "average": self.average.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "schedule": self.schedule.state_dict(), "preprocess": self.preprocess.state_dict(),
                "classes": list(self.data.classes), "input_shape": list(self.data.shape),
                "choices": self.choices, "rng": rng_state(self.order, self.noise), "threads": torch.get_num_threads()}


def build_job(cfg: DictConfig, run: Run, choices: dict, sweep: bool) -> Job:
    """device + seed → data-free components → data, preprocessing fitted on train → model (assemble) →
    optimizer, schedule, generators → a resumed run's state → TensorBoard."""
    device = distributed.device(pick_device(cfg.trainer.device))  # under torchrun: cuda:LOCAL_RANK
    speed = Speed(cfg.trainer, device)  # precision (bf16 autocast), channels_last, compile
    seed_everything(cfg.trainer.seed)
    augment = compose(build(node, f"augment.{name}") for name, node in selected(cfg, "augment").items())
    tta = build(cfg.tta, "tta")
    data, preprocess, train_split = load_and_fit(cfg, run, augment, device)
    first_batch = preprocess(train_split.images[: cfg.trainer.batch_size].float().div(255)).cpu()
    assembly = assemble(cfg, preprocess.output_shape(data.shape), len(data.classes), batch=first_batch)
    model = assembly.model.to(device)
    net = distributed.wrap(speed.prepare(model), cfg.trainer.sync_bn, cfg.trainer.seed)  # DDP under torchrun
    params = sum(p.numel() for p in model.parameters())
    log_job(run, model, params, data, device, sweep)
    batch_size = min(cfg.trainer.batch_size, len(data.train))
    effective_batch = distributed.effective_batch(batch_size, len(data.train))  # batch_size × processes
    steps_per_epoch = len(data.train) // effective_batch  # the last incomplete batch is dropped
    optimizer, schedule, average = build_optimization(cfg, model, preprocess, effective_batch, steps_per_epoch)
    order = torch.Generator().manual_seed(cfg.trainer.seed)
    noise = torch.Generator(device).manual_seed(distributed.rank_seed(cfg.trainer.seed + 1))
    if run.resumed:
        resume_state(run, average, optimizer, schedule, device, order, noise, cfg.trainer.threads)
    monitor = open_monitor(cfg, run, model, assembly.activation)
    if not run.resumed and distributed.is_main():
        log_start(cfg, monitor, choices, batch_size, train_split, augment, data, steps_per_epoch, sweep)
    run.facts = {"device": str(device), **speed.record(), "threads": torch.get_num_threads(), "params": params,
                 "batch_size": batch_size,
                 "seed": cfg.trainer.seed, "world_size": distributed.world_size(),
                 "effective_batch_size": effective_batch, "choices": choices}
    run.facts["startup_seconds"] = round(time.time() - LAUNCHED, 3)  # launch → the first step (`deeprob train`)
    show = cfg.log.progress is True or (cfg.log.progress == "auto" and not sweep and sys.stderr.isatty())
    return Job(cfg=cfg, choices=choices, device=device, speed=speed, data=data, train=train_split,
               preprocess=preprocess, augment=augment, model=model, net=net, regularizers=assembly.regularizers,
               optimizer=optimizer, schedule=schedule, order=order, noise=noise, monitor=monitor,
               tta=tta, average=average, effective_batch=effective_batch,
               steps_per_epoch=steps_per_epoch, show=show)


def log_job(run: Run, model, params: int, data: Data, device, sweep: bool):
    """Where the run's folder is (and how to follow it), the model's size, the data and the device."""
    if distributed.is_main() and not sweep:
        log.info("run folder %s  (follow it: tensorboard --logdir %s, then %s)", run.out, shlex.quote(str(run.out)),
                 LINK)  # smoothing 0: epoch points as measured
    log.info("%s: %d parameters, %d train / %d val images of shape %s, device %s", type(model).__name__, params,
             len(data.train), len(data.val or []), data.shape, device)


def resume_state(run: Run, average, optimizer, schedule, device, order, noise, threads):
    """A resumed run's weights, optimizer and schedule state, progress and generators, as its checkpoint left them
    (and its thread count, unless trainer.threads sets one)."""
    average.model.load_state_dict(run.resumed["model"])  # the evaluated weights (the trained ones without averaging)
    average.load_state_dict(run.resumed.get("average", {}))  # the trained weights, where they differ
    optimizer.load_state_dict(run.resumed["optimizer"])
    schedule.load_state_dict(run.resumed["schedule"])
    run.restore(device, order, noise)
    if threads is None:  # the interrupted run's own share: its numbers depend on the thread count
        torch.set_num_threads(run.resumed.get("threads", torch.get_num_threads()))
    log.info("resumed %s at epoch %d, step %d", run.out, run.progress.epoch, run.progress.step)


def load_and_fit(cfg: DictConfig, run: Run, augment: Compose, device) -> tuple:
    """(data, preprocessing fitted on the training split, the training split on the device): whole splits as
    uint8 tensors; statistics from the training split only."""
    data = load_data(resumed_data(cfg), *smallest_image(cfg))  # resume=RUN_DIR: the run's data, never a download
    preprocess = build(cfg.preprocess, "preprocess").fit(data.train.images)
    if run.resumed:  # the fitted values as the run left them (patch_whiten's bias may have been trained)
        preprocess.load_state_dict(run.resumed["preprocess"])
    augment.fit(data.train.images)  # options with training statistics (pca_color)
    return data, preprocess.to(device), Split(data.train.images.to(device), data.train.labels.to(device))


def build_optimization(cfg: DictConfig, model, preprocess, effective_batch: int, steps_per_epoch: int) -> tuple:
    """(optimizer, schedule, weight average) for the run's total steps."""
    total_steps = cfg.trainer.epochs * steps_per_epoch
    groups = iter(param_groups(model, preprocess, effective_batch))  # an iterator: Hydra passes it as is
    optimizer = build(cfg.optim, "optim", params=groups)
    schedule = build(cfg.schedule, "schedule", optimizer=optimizer, total_steps=total_steps)
    average = build(cfg.average, "average", model=model, total_steps=total_steps)
    return optimizer, schedule, average


def open_monitor(cfg: DictConfig, run: Run, model, activation):
    """TensorBoard (rank 0 only); a resumed run drops what the interrupted one logged from its checkpoint's step
    on, in an event file that sorts after the interrupted one's."""
    if not distributed.is_main():
        return distributed.Silent()
    if run.resumed:
        run.after_earlier_events()
    return Monitor(run.out, model, activation, cfg.log.hist_every, purge_step=run.progress.step if run.resumed else None)


def log_start(cfg: DictConfig, monitor: Monitor, choices: dict, batch_size: int, train_split: Split, augment,
              data: Data, steps_per_epoch: int, sweep: bool):
    """A fresh run's hparams (the numbers set on its command line, the metrics it can have, what its sweep varies),
    augmented examples and its config with its command line (the Text tab)."""
    hydra_cfg = HydraConfig.get() if HydraConfig.initialized() else None  # (None: train() called directly)
    overrides = hydra_cfg.overrides.task if hydra_cfg else []
    varied = (swept_keys(hydra_cfg.sweep.dir) if sweep and hydra_cfg else {}) or [o.split("=")[0].lstrip("+~")
                                                                                 for o in overrides]
    monitor.hparams({**overridden_numbers(overrides, cfg),
                     **{k: ",".join(v) if isinstance(v, list) else v for k, v in choices.items()},
                     "optim.lr": cfg.optim.lr, "trainer.batch_size": batch_size,
                     "trainer.epochs": cfg.trainer.epochs, "trainer.seed": cfg.trainer.seed},
                    final_metrics(data.val is not None, data.test is not None, choices.get("tta") != "none"),
                    steps_per_epoch, varied)
    log_examples(monitor.writer, train_split.images[:8], augment, cfg.trainer.seed + 2)
    monitor.text(OmegaConf.to_yaml(cfg, resolve=True), " ".join(["deeprob train", *overrides]))  # the Text tab


def log_to_file(error):
    """Write the error's message to the run's train.log (the console shows it once, from exits.report)."""
    record = log.makeRecord(log.name, logging.ERROR, __file__, 0, str(error), None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def group_choices(cfg: DictConfig, runtime_choices) -> dict:
    """The option chosen in every config group; multi-select groups as a list of names."""
    choices = {k: v for k, v in runtime_choices.items() if not k.startswith("hydra") and "/" not in k}
    for group in ("augment", "regularizer"):
        choices[group] = list(selected(cfg, group))
    return choices


def set_threads(threads, n_jobs):
    """torch's CPU threads: as asked (trainer.threads, else OMP_NUM_THREADS), else this run's share of the usable
    cores among a parallel launcher's jobs or the deeprob runs alive on this machine (threads.py says why)."""
    register_run()
    if threads is None and not n_jobs and os.environ.get("OMP_NUM_THREADS"):
        return  # the user's own choice for every OpenMP program (torch's default reads it)
    torch.set_num_threads(share_threads(threads, n_jobs, busy=busy_cores()))


def percent(value) -> str:
    return "—" if value is None else f"{100 * value:.2f} %"


def seed_everything(seed: int):
    """Seed python, numpy and torch so that two CPU runs with one seed compute the same numbers."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def cli():
    """`deeprob train` and `python -m deeprob_cli.train`: under torchrun, one process group and run folder first.

    What fails before main() runs (Hydra's own start-up: writing .hydra/ to a full disk, a signal) is one line
    here too; HYDRA_FULL_ERROR=1 keeps Hydra's traceback."""
    global _USER_FULL_ERROR
    saved = _USER_FULL_ERROR = os.environ.get("HYDRA_FULL_ERROR", "0")
    full = saved == "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra re-raises what it would print as a trace; we print one line
    try:
        distributed.setup()
        return main()
    except (Exception, Stopped) as e:
        if full and not isinstance(e, Stopped):
            raise
        code = report("train", e if isinstance(e, (OSError, Stopped)) else refused_by_hydra(e))
        release_all(discard_created=True)
        sys.exit(code)
    finally:
        os.environ["HYDRA_FULL_ERROR"], _USER_FULL_ERROR = saved, None
        release_all()
        SIGNALS.uninstall()


def refused_by_hydra(error: Exception) -> UserError:
    """What failed in Hydra's own start-up or a sweeper, as a refusal (one line, exit 2)."""
    reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
    if "No trials are completed yet" in reason:  # Optuna, when every trial diverged or failed
        reason = ("every trial of the sweep diverged or failed, so there is no best one (each job's "
                  "summary.json says why); narrow the search space, e.g. lower optim.lr")
    return UserError(reason)


if __name__ == "__main__":
    cli()
