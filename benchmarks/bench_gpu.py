"""CUDA throughput and time to 94 %: `make bench-gpu` (ARGS="--data PATH --preset fast_wide --compile").

    PYTHONPATH=. python benchmarks/bench_gpu.py --data /path/to/cifar10-jpeg     # image folder with train/

Runs train() in-process on the GPU: first a short run for images/second (data resident on the GPU, bf16
autocast, channels_last), then the preset for real, reporting its training seconds and whether validation
accuracy with TTA reached --target. Without --data it uses CIFAR-sized synthetic images: images/second only.
On a machine without CUDA it says so and exits with status 0 (nothing to measure).
"""
import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch


def run(overrides, label) -> dict:
    from hydra import compose, initialize_config_dir

    from deeprob_cli.config import CONFIG_DIR
    from deeprob_cli.train import train

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        train(cfg, Path(out), choices={}, sweep=True)
        s = json.loads((Path(out) / "summary.json").read_text())
    s["wall"] = time.perf_counter() - start
    print(f"{label:<34} {s['images_per_second']:9.0f} images/s  {s['train_seconds']:7.1f} s training  "
          f"{s['wall']:6.1f} s wall  val_acc {s['val_acc']}  with TTA {s['val_acc_tta']}  "
          f"[{s['precision']}, channels_last {s['channels_last']}, compile {s['compile']}]", flush=True)
    return s


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="an image folder (root with train/); default: synthetic images")
    parser.add_argument("--preset", default="fast",
                        help="conf/experiment/ preset to time (fast: optim=muon | fast_sgd | fast_wide)")
    parser.add_argument("--target", type=float, default=0.94, help="validation accuracy (with TTA) to reach")
    parser.add_argument("--compile", action="store_true", help="also time trainer.compile=true")
    args, extra = parser.parse_known_args()
    if not torch.cuda.is_available():
        print(f"bench-gpu: no CUDA device here (torch {torch.__version__}, CUDA build {torch.version.cuda}); "
              f"nothing to measure — run it on a GPU machine")
        return 0
    print(f"bench-gpu: {torch.cuda.get_device_name()}, torch {torch.__version__}, preset {args.preset}, "
          f"{time.strftime('%Y-%m-%d %H:%M')}")
    if args.data:
        data = ["dataset=image_folder", f"dataset.root={args.data}"]
    else:
        data = ["dataset=synthetic", "dataset.image_size=32", "dataset.num_classes=10", "dataset.num_train=50000"]
    base = data + [f"experiment={args.preset}", "trainer.device=cuda", "log.progress=false", *extra]
    run(base + ["trainer.epochs=1"], "warm-up epoch (cuDNN autotune)")
    for compiled in ([False, True] if args.compile else [False]):
        s = run(base + [f"trainer.compile={str(compiled).lower()}"],
                f"{args.preset}{', compiled' if compiled else ''}")
        acc = s["val_acc_tta"]
        if args.data and acc is not None:
            verdict = "reached" if acc >= args.target else "missed"
            print(f"time to {100 * args.target:.0f} %: {verdict} ({100 * acc:.2f} % with TTA) in "
                  f"{s['train_seconds']:.1f} s of training, {s['epochs_completed']} epochs")
    print(f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
