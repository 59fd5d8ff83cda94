"""Training throughput on this machine: `make bench` (or python benchmarks/bench.py [--data PATH]).

Prints images/second of the default recipe (convnet, relu, kaiming, standardize, [flip,crop], l2) on CPU,
with the default histogram logging and with none, measured in the same process one after the other.
Without --data it trains on CIFAR-sized synthetic images (3×32×32, 10 classes); with --data it uses an
image folder such as the extracted CIFAR-10 JPEG copy.
"""
import argparse
import json
import tempfile
import time
from pathlib import Path

from hydra import compose, initialize_config_dir

from deeprob_cli.config import CONFIG_DIR
from deeprob_cli.train import train


def run(overrides, label):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    with tempfile.TemporaryDirectory() as out:
        train(cfg, Path(out), choices={}, sweep=True)
        s = json.loads((Path(out) / "summary.json").read_text())
    print(f"{label:<34} {s['images_per_second']:8.0f} images/s   {s['train_seconds']:6.1f} s training   "
          f"val_acc {s['val_acc']:.3f}")
    return s


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="an image folder (root with train/); default: synthetic 32×32 images")
    parser.add_argument("--images", type=int, default=5120, help="training images per run")
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    if args.data:
        data = ["dataset=image_folder", f"dataset.root={args.data}", f"dataset.subset={args.images}"]
    else:
        data = ["dataset=synthetic", "dataset.image_size=32", "dataset.num_classes=10",
                f"dataset.num_train={args.images + 1000}", "dataset.val_size=1000"]
    base = data + [f"trainer.epochs={args.epochs}", "trainer.device=cpu", "log.progress=false"]
    print(f"default recipe, {args.images} training images × {args.epochs} epochs, {time.strftime('%Y-%m-%d %H:%M')}")
    logged = run(base, "with histograms (log.hist_every=200)")
    bare = run(base + ["log.hist_every=0"], "without histograms (hist_every=0)")
    print(f"histogram logging costs {100 * (1 - logged['images_per_second'] / bare['images_per_second']):+.1f} % "
          f"of training throughput")


if __name__ == "__main__":
    main()
