"""Throughput on this machine, all figures from one process: `make bench` (`make bench ARGS=--quick` ≈ 1 minute).

    PYTHONPATH=. python benchmarks/bench.py [--quick] [--data PATH] [--profile]

Prints, one after the other so that their ratios are comparable on a noisy shared machine:
  1. training images/second of the default recipe and of experiment=fast, in float32 and bf16 autocast
     (the real train() loop, in-process: augmentation, preprocessing, forward, backward, optimizer step);
  2. the cost of the default diagnostics logging (log.hist_every=200) against none (log.hist_every=0);
  3. the data pipeline: batched in-memory [flip,crop] and randaugment (benchmarks/bench_data.py) beside a
     plain per-image torchvision DataLoader (RandomCrop + RandomHorizontalFlip + ToTensor + Normalize on
     PIL images) with 0 and 2 workers, on the same images;
  4. with --profile, the operators that dominate a step of experiment=fast (torch.profiler);
  5. peak memory of the process (resource.getrusage maxrss);
  6. deeprob's own overhead: experiment=fast's training images/s beside a bare loop of the same work
     (benchmarks/bench_overhead.py), as the ratio preset / bare (issue 27: ≥ 0.95);
  7. the default recipe beside a busy core and beside a second run, as ratios (benchmarks/bench_contention.py).
Without --data it uses CIFAR-sized synthetic images (3×32×32, 10 classes); with --data an image folder such
as the extracted CIFAR-10 JPEG copy.
"""
import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_data, beside this file
from bench_data import augment_rates, images_per_second  # noqa: E402
from bench_overhead import data_overrides, overhead  # noqa: E402

from deeprob_cli.config import CONFIG_DIR  # noqa: E402
from deeprob_cli.speed import cpu_has_bf16  # noqa: E402
from deeprob_cli.train import train  # noqa: E402


def compose_cfg(overrides):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


def run(overrides, label) -> dict:
    """Train once in this process; print and return its summary."""
    cfg = compose_cfg(overrides)
    with tempfile.TemporaryDirectory() as out:
        train(cfg, Path(out), choices={}, sweep=True)
        s = json.loads((Path(out) / "summary.json").read_text())
    val = f"val_acc {s['val_acc']:.3f}" if s["val_acc"] is not None else ""
    print(f"  {label:<40} {s['images_per_second']:7.0f} images/s  {s['train_seconds']:6.1f} s  {val}  "
          f"[{s['precision']}{', channels_last' if s['channels_last'] else ''}]", flush=True)
    return s


def load() -> str:
    return f"load {open('/proc/loadavg').read().split()[0]}" if os.path.exists("/proc/loadavg") else ""


def torchvision_rate(images, batch, workers, batches) -> float:
    """Images/s of the per-image PIL pipeline through a DataLoader (the textbook way)."""
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms as T

    pil = [Image.fromarray(im.permute(1, 2, 0).numpy()) for im in images[:batch * batches]]
    transform = T.Compose([T.RandomCrop(images.shape[-1], padding=4, padding_mode="reflect"),
                           T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize((0.5,) * 3, (0.25,) * 3)])

    class Images(Dataset):
        def __len__(self):
            return len(pil)

        def __getitem__(self, i):
            return transform(pil[i])

    loader = DataLoader(Images(), batch_size=batch, shuffle=True, num_workers=workers)
    start = time.perf_counter()
    n = sum(len(x) for x in loader)  # workers' start-up included, as a training epoch pays it
    return n / (time.perf_counter() - start)


def batched_rate(images, batch, repeats) -> float:
    """Images/s of train.py's path: gather a random batch from the uint8 tensor, float, flip+crop, normalize."""
    from bench_data import option

    from deeprob_cli.components.augment import compose as compose_augment
    from deeprob_cli.config import build

    aug = compose_augment(build(option("augment", n), f"augment.{n}") for n in ("flip", "crop"))
    g = torch.Generator().manual_seed(0)
    mean, std = torch.full((1, 3, 1, 1), 0.5), torch.full((1, 3, 1, 1), 0.25)

    def pipeline(_):
        index = torch.randint(0, len(images), (batch,), generator=g)
        return (aug(images[index].float().div_(255), g) - mean) / std

    return images_per_second(pipeline, images[:batch], repeats)


def profile_fast(data, steps=3):
    """Print the operators that dominate a few training steps of experiment=fast (data: the dataset overrides)."""
    from torch.profiler import ProfilerActivity, profile

    size = [f"dataset.subset={512 * steps}"] if "dataset=image_folder" in data else \
        [f"dataset.num_train={512 * steps + 256}", "dataset.val_size=256"]
    overrides = [o for o in data if not o.startswith(("dataset.subset", "dataset.num_train", "dataset.val_size"))]
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run(overrides + size + ["experiment=fast", "trainer.epochs=1", "log.progress=false"],
            f"experiment=fast, {steps} steps under the profiler")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15, max_name_column_width=40))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="an image folder (root with train/); default: synthetic 32×32 images")
    parser.add_argument("--quick", action="store_true", help="smaller runs: about a minute on 2 idle cores")
    parser.add_argument("--profile", action="store_true", help="also profile a few steps of experiment=fast")
    args = parser.parse_args()
    images, epochs = (1024, 1) if args.quick else (4096, 2)
    if args.data:
        data = ["dataset=image_folder", f"dataset.root={args.data}", f"dataset.subset={images}"]
    else:
        data = ["dataset=synthetic", "dataset.image_size=32", "dataset.num_classes=10",
                f"dataset.num_train={images + 1000}", "dataset.val_size=1000"]
    base = data + [f"trainer.epochs={epochs}", "trainer.device=cpu", "log.progress=false"]
    print(f"deeprob bench: {images} training images × {epochs} epochs, {torch.get_num_threads()} threads, "
          f"CPU bf16 {'native' if cpu_has_bf16() else 'emulated'}, {time.strftime('%Y-%m-%d %H:%M')}, {load()}")

    print("1. training throughput (train() in-process)")
    rates = {}
    for recipe, extra in (("default", ["log.hist_every=0"]), ("fast", ["experiment=fast"])):
        for precision in ("fp32", "bf16"):
            s = run(base + extra + [f"trainer.precision={precision}"], f"{recipe} recipe, {precision}")
            rates[recipe, precision] = s["images_per_second"]
        print(f"  {recipe}: bf16 / fp32 = {rates[recipe, 'bf16'] / rates[recipe, 'fp32']:.2f}×   {load()}")

    print("2. diagnostics logging overhead (default recipe, default precision)")
    logged = run(base, "default logging (log.hist_every=200)")
    bare = run(base + ["log.hist_every=0"], "no histograms (log.hist_every=0)")
    print(f"  logging costs {100 * (bare['images_per_second'] / logged['images_per_second'] - 1):+.1f} % of "
          f"training time here   {load()}")
    # these runs are short, so their end-of-epoch snapshots weigh more than in a real epoch: scale to CIFAR-10
    snapshots = epochs + (bare["steps"] + 199) // 200  # each epoch's last step, and every 200th step
    per_snapshot = max(logged["train_seconds"] - bare["train_seconds"], 0) / snapshots
    step = bare["train_seconds"] / bare["steps"]
    steps = 45000 // 128  # one epoch of the CIFAR-10 training split at the default batch size
    per_epoch = 1 + steps / 200
    print(f"  {per_snapshot:.2f} s per snapshot, {step:.3f} s per step: on a 45,000-image epoch ({steps} steps, "
          f"{per_epoch:.2f} snapshots) logging costs {100 * per_snapshot * per_epoch / (step * steps):.1f} %")

    print("3. data pipeline (images/s; batch 512)")
    if args.data:
        from omegaconf import OmegaConf

        from deeprob_cli.data import load_data
        pool = load_data(OmegaConf.merge(compose_cfg(data).dataset, {"subset": 10240})).train.images
    else:
        pool = torch.randint(0, 256, (10240, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    repeats = 3 if args.quick else 10
    batched = batched_rate(pool, 512, repeats)
    print(f"  batched in-memory gather + [flip,crop] + normalize  {batched:9.0f}")
    for label, rate in augment_rates(pool, ("[flip,crop]", "randaugment"), 512, repeats).items():
        print(f"  batched augment={label:<34} {rate:9.0f}")
    for workers in (0, 2):
        rate = torchvision_rate(pool, 512, workers, 2 if args.quick else 8)
        print(f"  torchvision DataLoader, PIL per image, workers={workers}    {rate:9.0f}   "
              f"(batched is {batched / rate:.1f}×)")

    if args.profile:
        print("4. profile of experiment=fast (self CPU time)")
        profile_fast(data)

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux
    print(f"5. peak memory (maxrss) {peak:.0f} MiB   {load()}")
    framework_overhead(args.data, args.quick)
    contention(args.data, images, args.quick)


def contention(data, images: int, quick: bool):
    """Section 7: the default recipe idle, beside a busy core and beside a second run (real subprocesses)."""
    import bench_contention

    print(f"7. a machine that is not idle: one busy core, two runs side by side   {load()}")
    bench_contention.main(["--subset", str(images)] + (["--data", data] if data else [])
                          + ["--repeats", "1" if quick else "2"])


def framework_overhead(data, quick: bool):
    """Section 6: experiment=fast through train() against the bare loop, alternating, as one ratio."""
    images, epochs = (4000, 1) if quick else (8000, 2)
    print(f"6. deeprob's overhead: experiment=fast vs a bare loop of the same work ({images} images × {epochs} "
          f"epochs)   {load()}")
    print(overhead(["experiment=fast", *data_overrides(data, images), "trainer.device=cpu", "log.progress=false",
                    f"trainer.epochs={epochs}"], 1 if quick else 2), flush=True)


if __name__ == "__main__":
    main()
