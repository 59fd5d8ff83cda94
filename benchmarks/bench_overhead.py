"""deeprob's own overhead: experiment=fast through train() beside a bare loop of the same work, in one process.

    PYTHONPATH=. python benchmarks/bench_overhead.py [--data PATH] [--images 8000] [--epochs 2] [--repeats 2]
    PYTHONPATH=. python benchmarks/bench_overhead.py --profile     # where one epoch of experiment=fast goes

The bare loop (`bare_rate`) is written for this benchmark: the same network, preprocessing, augmentation ops,
optimizer, schedule, batch, precision, memory layout and in-memory uint8 data, built from the same composed
config, and nothing else — no run folder, logging, progress bars, checkpoints, divergence checks, metrics or
diagnostics. Both arms count images per second of training steps only (validation and start-up excluded, as
summary.json's images_per_second does), and they alternate (preset, bare, preset, bare, ...), so that the
ratio preset/bare is comparable on a busy machine; issue 27 asks for ≥ 0.95.
"""
import argparse
import cProfile
import io
import json
import pstats
import sys
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from deeprob_cli.config import CONFIG_DIR


def compose_cfg(overrides):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


def data_overrides(data: str | None, images: int) -> list:
    if data:
        return ["dataset=image_folder", f"dataset.root={data}", f"dataset.subset={images}", "dataset.val_size=1000"]
    return ["dataset=synthetic", "dataset.image_size=32", "dataset.num_classes=10",
            f"dataset.num_train={images + 1000}", "dataset.val_size=1000"]


def preset_rate(overrides) -> float:
    """Images/s of train()'s training steps (summary.json's images_per_second)."""
    from deeprob_cli.train import train

    with tempfile.TemporaryDirectory() as out:
        train(compose_cfg(overrides), Path(out), choices={}, sweep=True)
        return json.loads((Path(out) / "summary.json").read_text())["images_per_second"]


def bare_rate(overrides) -> float:
    """Images/s of the bare loop: gather, float, augment, preprocess, forward + loss under autocast, backward,
    optimizer step, schedule step; a fresh permutation per epoch."""
    from deeprob_cli.assemble import assemble
    from deeprob_cli.components.augment import compose as compose_augment
    from deeprob_cli.components.optim import param_groups
    from deeprob_cli.config import build, selected, smallest_image
    from deeprob_cli.data import load_data
    from deeprob_cli.speed import Speed

    cfg = compose_cfg(overrides)
    torch.manual_seed(cfg.trainer.seed)
    speed = Speed(cfg.trainer, torch.device("cpu"))
    data = load_data(cfg.dataset, *smallest_image(cfg))
    images, labels = data.train.images, data.train.labels
    preprocess = build(cfg.preprocess, "preprocess").fit(images)
    augment = compose_augment(build(node, f"augment.{n}") for n, node in selected(cfg, "augment").items())
    augment.fit(images)
    built = assemble(cfg, preprocess.output_shape(data.shape), len(data.classes),
                     batch=preprocess(images[:cfg.trainer.batch_size].float().div(255)))
    model = built.model
    net = speed.prepare(model)
    batch = min(cfg.trainer.batch_size, len(images))
    steps = len(images) // batch
    optimizer = build(cfg.optim, "optim", params=iter(param_groups(model, preprocess, batch)))
    schedule = build(cfg.schedule, "schedule", optimizer=optimizer, total_steps=cfg.trainer.epochs * steps)
    noise = torch.Generator().manual_seed(1)
    net.train()
    seconds = 0.0
    for epoch in range(1, cfg.trainer.epochs + 1):
        if hasattr(preprocess, "set_epoch"):
            preprocess.set_epoch(epoch)
        start = time.perf_counter()
        order = torch.randperm(len(images))
        for i in range(steps):
            index = order[i * batch:(i + 1) * batch]
            x = images[index].float().div_(255)
            x = speed.layout(preprocess(augment(x, noise, indices=index, epoch=epoch)))
            with speed.autocast():
                loss = built.regularizers.loss(net(x), labels[index])  # cross-entropy, label-smoothed
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        seconds += time.perf_counter() - start
    return cfg.trainer.epochs * steps * batch / seconds


def profile_epoch(overrides, rows: int = 25):
    """cProfile of train() on the preset (one process, one epoch): the functions with the most time in them."""
    from deeprob_cli.train import train

    cfg = compose_cfg(overrides)
    profiler = cProfile.Profile()
    with tempfile.TemporaryDirectory() as out:
        profiler.enable()
        train(cfg, Path(out), choices={}, sweep=True)
        profiler.disable()
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text).sort_stats("cumulative")
    stats.print_stats(rows)
    stats.print_callees(r"train\.py:\d+\(train_step\)")  # the step's parts: augment, forward, backward, step, ...
    print(text.getvalue())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="an image folder (root with train/); default: synthetic 32×32 images")
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--images", type=int, default=8000, help="training images (a multiple of the batch)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="preset/bare pairs, alternating")
    parser.add_argument("--profile", action="store_true", help="cProfile one epoch of the preset instead")
    args = parser.parse_args()
    overrides = [f"experiment={args.preset}", *data_overrides(args.data, args.images), "trainer.device=cpu",
                 "log.progress=false", f"trainer.epochs={args.epochs}"]
    if args.profile:
        profile_epoch([*overrides[:-1], "trainer.epochs=1"])
        return
    print(overhead(overrides, args.repeats))


def overhead(overrides, repeats: int) -> str:
    """Alternate the preset and the bare loop; one line: both rates (the last of each) and their ratio."""
    bare_rate(overrides)  # warm-up: oneDNN's kernels and the data cache for both arms
    preset, bare = [], []
    for _ in range(repeats):
        preset.append(preset_rate(overrides))
        bare.append(bare_rate(overrides))
    p, b = max(preset), max(bare)  # each arm's best: the least disturbed by other processes
    return (f"  experiment={overrides[0].split('=')[1]} {p:7.0f} images/s   bare loop {b:7.0f} images/s   "
            f"preset / bare = {p / b:.3f}   (best of {repeats} each, alternating)")


if __name__ == "__main__":
    sys.exit(main())
