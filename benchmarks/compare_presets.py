"""Presets against each other on real data, interleaved seed by seed: `deeprob train experiment=P` for each preset
and seed (a fresh process each, exactly as a user runs it), then training seconds, images/s and val accuracy
(plain and with TTA) per run, their means, and each preset's ratio of training seconds to the first preset's.

    # the pilot (a subset, one seed; about 5 minutes on 2 busy cores):
    PYTHONPATH=. python benchmarks/compare_presets.py --data /tmp/data/cifar10-jpeg --subset 10000 --val-size 2000
    # issue 27's acceptance (45k/5k, seeds 0-2, both presets; ≈ 20 minutes on 2 idle cores; nothing else running):
    PYTHONPATH=. python benchmarks/compare_presets.py --data /tmp/data/cifar10-jpeg --seeds 0 1 2 --out runs/accept27
    # the rest of its acceptance, one seed each (fast_wide: ≤ 30 minutes of training, ≥ 91 % with TTA):
    PYTHONPATH=. python benchmarks/compare_presets.py --data /tmp/data/cifar10-jpeg --presets fast_wide --out runs/wide27
    PYTHONPATH=. python benchmarks/compare_presets.py --data /tmp/data/cifar10-jpeg --presets fast --val-size 0

Order: for each seed, every preset one after the other (fast_sgd, fast, then the next seed), so that a change in
the machine's load falls on both arms alike. The CPU's model name (and AMX or not) is printed with the figures; the load
average before and after each run says whether the machine was idle.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def bf16_support() -> str:
    """What the CPU's flags say about native bf16 (AMX, AVX512-BF16 or neither)."""
    from deeprob_cli.speed import cpu_flags

    flags = cpu_flags()
    return "AMX" if "amx_bf16" in flags else "AVX512-BF16, no AMX" if "avx512_bf16" in flags else "no native bf16"


def load() -> str:
    return open("/proc/loadavg").read().split()[0] if os.path.exists("/proc/loadavg") else "?"


def train(preset: str, seed: int, data: list, out: Path, extra: list) -> dict:
    """One `deeprob train` in a fresh interpreter; its summary.json (status failed with the error otherwise)."""
    folder = out / f"{preset}-seed{seed}"
    command = [sys.executable, "-m", "deeprob_cli", "train", f"experiment={preset}", *data, f"trainer.seed={seed}",
               "log.progress=false", f"hydra.run.dir={folder}", *extra]
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode != 0 or not (folder / "summary.json").exists():
        return {"status": "failed", "error": (result.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads((folder / "summary.json").read_text())


def percent(x) -> str:
    return "    —  " if x is None else f"{100 * x:6.2f} %"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="image folder with train/ (the shared CIFAR-10 JPEG copy)")
    parser.add_argument("--presets", nargs="+", default=["fast_sgd", "fast"], help="the first is the baseline")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--subset", type=int, help="train on N images (default: all 45,000)")
    parser.add_argument("--val-size", type=int, default=5000)
    parser.add_argument("--out", default=None, help="where the run folders go (default: runs/compare-<time>)")
    args, extra = parser.parse_known_args()  # anything else: overrides for every run (e.g. trainer.threads=2)
    out = Path(args.out or REPO / "runs" / time.strftime("compare-%Y%m%d-%H%M%S")).resolve()
    data = ["dataset=image_folder", f"dataset.root={args.data}", f"dataset.val_size={args.val_size}",
            *([f"dataset.subset={args.subset}"] if args.subset else [])]
    print(f"compare_presets: {', '.join(args.presets)}; seeds {args.seeds}; "
          f"{args.subset or 'all'} train / {args.val_size} val images; CPU {cpu_name()} ({bf16_support()}), "
          f"{os.cpu_count()} cores; "
          f"{time.strftime('%Y-%m-%d %H:%M')}; runs in {out}", flush=True)
    results = {p: [] for p in args.presets}
    for seed in args.seeds:
        for preset in args.presets:
            before = load()
            s = train(preset, seed, data, out, extra)
            results[preset].append(s)
            if s.get("status") != "completed":
                print(f"  {preset:<10} seed {seed}: {s.get('status')}: {s.get('error')}", flush=True)
                continue
            print(f"  {preset:<10} seed {seed}: {s['train_seconds']:7.1f} s training  {s['images_per_second']:6.0f} "
                  f"images/s  val {percent(s['val_acc'])}  with TTA {percent(s['val_acc_tta'])}  "
                  f"[{s['precision']}, {s['epochs_completed']} epochs, batch {s['batch_size']}]  "
                  f"load {before} → {load()}", flush=True)
    print("means (completed runs):")
    base = None
    for preset, runs in results.items():
        done = [s for s in runs if s.get("status") == "completed"]
        if not done:
            print(f"  {preset:<10} no completed run")
            continue
        seconds = statistics.mean(s["train_seconds"] for s in done)
        val = [s["val_acc"] for s in done if s.get("val_acc") is not None]
        tta = [s["val_acc_tta"] for s in done if s.get("val_acc_tta") is not None]
        base = seconds if base is None else base
        print(f"  {preset:<10} {len(done)} runs  {seconds:7.1f} s training ({seconds / base:.2f}× "
              f"{args.presets[0]})  val {percent(statistics.mean(val) if val else None)}"
              f"  with TTA {percent(statistics.mean(tta) if tta else None)}")


if __name__ == "__main__":
    main()
