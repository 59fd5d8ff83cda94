"""Images/second of the augmentation pipeline beside the training step's, on the CPU, on real data.

    DEEPROB_CACHE=/tmp/deeprob-cache PYTHONPATH=. python benchmarks/bench_data.py --root /tmp/data/cifar10-jpeg

Each pipeline runs on float batches in [0, 1] gathered from the uint8 training tensor, as train.py does; the
training step is forward + backward + SGD step of the default model (conf/model/convnet.yaml) on one batch.
Figures from one run are comparable with each other; across runs this shared machine is noisy.
"""
import argparse
import time

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from deeprob_cli.components.augment import compose
from deeprob_cli.config import CONFIG_DIR, build
from deeprob_cli.data import load_data

PIPELINES = {"[flip,crop]": ["flip", "crop"], "scale": ["scale"], "color_jitter": ["color_jitter"],
             "pca_color": ["pca_color"], "randaugment": ["randaugment"]}


def option(group, name):
    return OmegaConf.load(CONFIG_DIR / group / f"{name}.yaml")


def images_per_second(fn, batch, repeats):
    fn(batch)  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        fn(batch)
    return repeats * len(batch) / (time.perf_counter() - start)


def augment_rates(images, names=PIPELINES, batch=128, repeats=10) -> dict:
    """{label: images/s} of each batched augmentation pipeline on float batches gathered from uint8 images."""
    x = images[:batch].float().div(255)
    rates = {}
    for label in names:
        aug = compose(build(option("augment", n), f"augment.{n}") for n in PIPELINES[label]).fit(images)
        g = torch.Generator().manual_seed(0)
        rates[label] = images_per_second(lambda b: aug(b, g), x, repeats)
    return rates


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="/tmp/data/cifar10-jpeg", help="image_folder root (train/<class>/...)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()

    cfg = OmegaConf.merge(option("dataset", "image_folder"), {"root": args.root, "subset": 10000})
    data = load_data(cfg)
    x = data.train.images[:args.batch].float().div(255)
    print(f"{torch.get_num_threads()} threads, batch {args.batch}, images {tuple(data.shape)}")

    for label, rate in augment_rates(data.train.images, PIPELINES, args.batch, args.repeats).items():
        print(f"augment={label:14s} {rate:10.0f} images/s")

    activation = build(option("activation", "relu"), "activation")
    model = build(option("model", "convnet"), "model", in_shape=data.shape, num_classes=len(data.classes),
                  activation=activation)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    y = data.train.labels[:args.batch]

    def step(b):
        loss = F.cross_entropy(model(b), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    rate = images_per_second(step, x, max(3, args.repeats // 2))
    print(f"training step (convnet)  {rate:10.0f} images/s")


if __name__ == "__main__":
    main()
