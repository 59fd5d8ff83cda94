"""The one Hydra entry point: `deeprob train [overrides]` (same as `python -m deeprob_cli.train [overrides]`).

    deeprob train activation=gelu init=kaiming augment=[flip,crop] regularizer=[l2]
    deeprob train -m activation=relu,tanh dataset=synthetic      # a sweep: runs/multirun/<date>/<time>/<job>

Reads top to bottom: check config → device + seed → data (uint8 tensors) → preprocessing fitted on train →
model from the groups → init → optimizer + schedule → loop (TensorBoard, checkpoint per epoch) → summary.json.
"""
import json
import logging
import random
import sys
import time
from pathlib import Path

import hydra
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig
from tqdm import tqdm

from . import UserError, __version__
from .checkpoint import save_checkpoint
from .components.augment import compose
from .components.regularizer import apply_to_model, batch_mixer, loss_function
from .config import CONFIG_DIR, build, check, selected, to_plain
from .data import load_data
from .evaluate import evaluate
from .monitor import Monitor

log = logging.getLogger("deeprob")


@hydra.main(config_path=str(CONFIG_DIR), config_name="train", version_base="1.3")
def main(cfg: DictConfig):
    """Train once; return the final validation accuracy (what a Hydra sweeper maximizes)."""
    hydra_cfg = HydraConfig.get()
    out = Path(hydra_cfg.runtime.output_dir)
    sweep = hydra_cfg.mode == RunMode.MULTIRUN
    try:
        return train(cfg, out, choices=group_choices(cfg, hydra_cfg.runtime.choices), sweep=sweep)
    except UserError as e:
        print(f"deeprob train: error: {e}", file=sys.stderr)
        if not sweep:
            sys.exit(2)
        write_json(out / "summary.json", {"status": "failed", "error": str(e)})  # the sweep goes on
        return None


def train(cfg: DictConfig, out: Path, choices: dict, sweep: bool = False):
    check(cfg)
    if (out / "summary.json").exists() or (out / "checkpoints").exists():
        raise UserError(f"hydra.run.dir: {out} already holds a run; choose another folder")
    started = time.perf_counter()
    device = pick_device(cfg.trainer.device)
    seed_everything(cfg.trainer.seed)

    # data: whole splits as uint8 tensors on the training device; statistics from the training split only
    data = load_data(cfg.dataset)
    preprocess = build(cfg.preprocess, "preprocess").fit(data.train.images).to(device)
    train_split = move(data.train, device)
    augment = compose(build(node, f"augment.{name}") for name, node in selected(cfg, "augment").items())
    regularizers = [build(node, f"regularizer.{name}") for name, node in selected(cfg, "regularizer").items()]

    # model from the groups, then its initialization (Kaiming's gain follows the chosen activation)
    activation = build(cfg.activation, "activation")
    model = build(cfg.model, "model", in_shape=data.shape, num_classes=len(data.classes), activation=activation)
    apply_to_model(regularizers, model, activation())  # dropout, dropconnect, fractional pooling, stochastic depth
    initialize = build(cfg.init, "init")
    first_batch = preprocess(train_split.images[: cfg.trainer.batch_size].float().div(255))
    initialize(model, activation=activation(), batch=first_batch.cpu())
    model.to(device)
    params = sum(p.numel() for p in model.parameters())
    log.info("%s: %d parameters, %d train / %d val images of shape %s, device %s", type(model).__name__, params,
             len(data.train), len(data.val or []), data.shape, device)

    batch_size = min(cfg.trainer.batch_size, len(data.train))
    steps_per_epoch = len(data.train) // batch_size  # the last incomplete batch is dropped
    total_steps = cfg.trainer.epochs * steps_per_epoch
    optimizer = build(cfg.optim, "optim", params=model.parameters())
    schedule = build(cfg.schedule, "schedule", optimizer=optimizer, total_steps=total_steps)

    monitor = Monitor(out, model, activation, cfg.log.hist_every)
    monitor.hparams({**{k: ",".join(v) if isinstance(v, list) else v for k, v in choices.items()},
                     "optim.lr": cfg.optim.lr, "trainer.batch_size": batch_size,
                     "trainer.epochs": cfg.trainer.epochs, "trainer.seed": cfg.trainer.seed})
    order = torch.Generator().manual_seed(cfg.trainer.seed)  # data order
    noise = torch.Generator(device).manual_seed(cfg.trainer.seed + 1)  # augmentation draws
    mix, criterion = batch_mixer(regularizers, len(data.classes)), loss_function(regularizers)
    show = cfg.log.progress is True or (cfg.log.progress == "auto" and not sweep and sys.stderr.isatty())

    step, train_seconds, metrics = 0, 0.0, {}
    for epoch in tqdm(range(1, cfg.trainer.epochs + 1), desc="epochs", disable=not show):
        model.train()
        epoch_start, first_step = time.perf_counter(), step
        losses, correct = [], torch.zeros((), device=device)
        permutation = torch.randperm(len(data.train), generator=order).to(device)
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch}", leave=False, disable=not show)
        for i in bar:
            index = permutation[i * batch_size:(i + 1) * batch_size]
            x = preprocess(augment(train_split.images[index].float().div_(255), noise))
            y = train_split.labels[index]
            x, targets, y = mix(x, y, noise)  # cutout, mixup, cutmix; y becomes each target's dominant label
            snapshot = monitor.due(step, last_of_epoch=i == steps_per_epoch - 1)
            if snapshot:
                monitor.snapshot()
            logits = model(x)
            loss = criterion(logits, targets)  # cross-entropy, label-smoothed when selected
            total = loss
            for reg in regularizers:
                extra = reg.penalty(model) if hasattr(reg, "penalty") else None
                if extra is not None:
                    total = total + extra
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()
            lr = optimizer.param_groups[0]["lr"]
            for reg in regularizers:
                if hasattr(reg, "after_step"):
                    reg.after_step(model, lr)
            schedule.step()
            if snapshot:
                monitor.log_snapshot(step)
            losses.append(loss.detach())
            correct += (logits.argmax(1) == y).sum()
            step += 1
            if show and i % 20 == 0:
                bar.set_postfix(loss=f"{loss.item():.3f}", img_s=f"{(i + 1) * batch_size / (time.perf_counter() - epoch_start):.0f}")
        train_seconds += time.perf_counter() - epoch_start

        monitor.step_losses(first_step, losses)
        metrics = {"train/loss": torch.stack(losses).mean().item(),
                   "train/acc": correct.item() / (steps_per_epoch * batch_size), "lr": lr}
        if data.val is not None:
            metrics["val/loss"], metrics["val/acc"] = evaluate(model, data.val, preprocess, device,
                                                               cfg.trainer.eval_batch_size)
        monitor.scalars(metrics, step)
        log.info("epoch %d/%d  %s  (%.1f s)", epoch, cfg.trainer.epochs,
                 "  ".join(f"{k} {v:.4g}" for k, v in metrics.items()), time.perf_counter() - epoch_start)
        save_checkpoint(out / "checkpoints" / "last.pt", {
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
            "preprocess": preprocess.state_dict(), "classes": list(data.classes), "input_shape": list(data.shape),
            "config": to_plain(cfg), "choices": choices, "epoch": epoch, "step": step})
    monitor.close()

    test_acc = evaluate(model, data.test, preprocess, device, cfg.trainer.eval_batch_size)[1] if data.test else None
    summary = {
        "status": "completed", "epochs_completed": cfg.trainer.epochs, "steps": step,
        "train_loss": metrics["train/loss"], "train_acc": metrics["train/acc"],
        "val_loss": metrics.get("val/loss"), "val_acc": metrics.get("val/acc"), "test_acc": test_acc,
        "seconds": time.perf_counter() - started, "train_seconds": train_seconds,
        "images_per_second": step * batch_size / train_seconds, "device": str(device), "params": params,
        "seed": cfg.trainer.seed, "deeprob": __version__, "torch": torch.__version__,
        "choices": choices,
    }
    write_json(out / "summary.json", summary)
    log.info("done: val_acc %s, %.0f images/s, summary in %s", summary["val_acc"], summary["images_per_second"], out)
    return summary["val_acc"] if summary["val_acc"] is not None else summary["train_acc"]


def group_choices(cfg: DictConfig, runtime_choices) -> dict:
    """The option chosen in every config group; multi-select groups as a list of names."""
    choices = {k: v for k, v in runtime_choices.items() if not k.startswith("hydra") and "/" not in k}
    for group in ("augment", "regularizer"):
        choices[group] = list(selected(cfg, group))
    return choices


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
    main()
