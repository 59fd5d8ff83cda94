"""Start-up cost of an image folder: cold decode vs warm cache, and what the content-hash cache key costs.

    PYTHONPATH=. python benchmarks/bench_cache.py --root /tmp/data/cifar10-jpeg

Reads the folder into an empty cache (cold: list, hash, decode, write the cache), then again from the cache
(warm: list, hash every file, load the cache), then times the key alone (listing + reading + hashing every
file) and the cache load alone. Figures from one run are comparable with each other; across runs this shared
machine is noisy, so repeat with --repeat.
"""
import argparse
import os
import tempfile
import time
from pathlib import Path


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="a folder holding train/<class>/ images")
    parser.add_argument("--repeat", type=int, default=3, help="warm reads and key timings to take")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="deeprob-bench-cache-") as cache:
        os.environ["DEEPROB_CACHE"] = cache
        from omegaconf import OmegaConf

        from deeprob_cli.datasets import image_folder as data

        cfg = OmegaConf.create({"_target_": "deeprob_cli.datasets.image_folder.ImageFolder", "root": args.root})
        for label in ["cold"] + ["warm"] * args.repeat:
            start = time.perf_counter()
            train, _, _ = data.read_image_folder(cfg)
            shape = tuple(train.images.shape[1:])
            print(f"{label}: {time.perf_counter() - start:.2f} s for {len(train):,} images of {shape}")
        folder = Path(args.root) / "train"
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            classes, files, _ = data._list_images(folder)
            t1 = time.perf_counter()
            fingerprints = data._parallel(lambda p: data._fingerprint(data._read(p)), files)
            key = data._cache_key(folder, classes, files, fingerprints)
            t2 = time.perf_counter()
            data._load_cache(key, classes, len(files))
            t3 = time.perf_counter()
            megabytes = sum(size for size, _ in fingerprints) / 1e6
            print(f"key: {t2 - t0:.2f} s (listing {t1 - t0:.2f} s, reading + hashing {megabytes:.0f} MB "
                  f"{t2 - t1:.2f} s); cache load {t3 - t2:.2f} s")


if __name__ == "__main__":
    main()
