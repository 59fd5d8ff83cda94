"""Speed of `deeprob train` on a machine that is not idle (issue 23), every figure from one script run:

    PYTHONPATH=. python benchmarks/bench_contention.py [--data PATH] [--subset 6000] [--repeats 2]
    make bench   # runs it as its last part

Arms, each a real `deeprob train` subprocess (the default recipe, 1 epoch, images/s from its summary.json):
  idle            nothing else running
  busy            one other process spinning on one core (a Python busy loop), started before the run
  busy threads=1  the same, with trainer.threads=1 (giving the core up)
  pair            two runs started together; their images/s summed
  spin ...        deeprob before issue 23: OpenMP's default spinning wait (GOMP_SPINCOUNT=300000, the value GOMP
                  uses when OMP_WAIT_POLICY is unset) and every usable core (trainer.threads pinned to them)
Then the time from launch to the first training step of a second run on the same (cached) images, and
`deeprob train --cfg job`'s wall time. Arms are interleaved over --repeats rounds; the best of each is printed.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SPIN = {"GOMP_SPINCOUNT": "300000"}  # GOMP's default when OMP_WAIT_POLICY is unset (deeprob before issue 23)


def cpu_name() -> str:
    flags = model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name") and not model:
            model = line.split(":", 1)[1].strip()
        if line.startswith("flags") and not flags:
            flags = line
    extras = [f for f in ("amx_bf16", "avx512_bf16") if f" {f}" in flags]
    return f"{model} ({', '.join(extras) or 'no native bf16'}), {len(os.sched_getaffinity(0))} cores"


def env(extra=None) -> dict:
    e = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    return {**e, "PYTHONPATH": str(REPO), **(extra or {})}


def start(args, out, extra=None):
    cmd = [sys.executable, "-m", "deeprob_cli", "train", *args, f"hydra.run.dir={out}", "log.progress=false"]
    return subprocess.Popen(cmd, env=env(extra), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def rate(proc, out) -> float:
    _, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"bench_contention: a run failed ({proc.returncode}): {err.strip()[-300:]}")
    return json.loads((Path(out) / "summary.json").read_text())["images_per_second"]


def train_rates(args, tmp, n=1, extra=None, busy=False) -> float:
    """Summed images/s of n runs started together (optionally beside a busy loop)."""
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        time.sleep(0.5 if busy else 0)
        outs = [tempfile.mkdtemp(dir=tmp) for _ in range(n)]
        procs = [start(args, o, extra) for o in outs]
        return sum(rate(p, o) for p, o in zip(procs, outs))
    finally:
        if spinner:
            spinner.kill()
            spinner.wait()


def first_step_seconds(args, tmp) -> float:
    """Launch → the first training step (log.progress's first 'step 1' is not printed, so: the run's own
    record of when its first step began, summary.json's startup_seconds)."""
    out = tempfile.mkdtemp(dir=tmp)
    t0 = time.perf_counter()
    p = start([*args, "trainer.epochs=1"], out)
    rate(p, out)
    summary = json.loads((Path(out) / "summary.json").read_text())
    return summary.get("startup_seconds", float("nan")), time.perf_counter() - t0


def cfg_job_seconds() -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "deeprob_cli", "train", "--cfg", "job"], env=env(),
                   stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="", help="an image folder (the CIFAR-10 JPEG copy); default: synthetic")
    ap.add_argument("--subset", type=int, default=6000)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--arms", default="idle,busy,busy1,pair,spin-idle,spin-busy,spin-pair")
    a = ap.parse_args(argv)
    if a.data:
        args = ["dataset=image_folder", f"dataset.root={a.data}", f"dataset.subset={a.subset}", "trainer.epochs=1"]
    else:  # CIFAR-sized synthetic images
        args = ["dataset=synthetic", "dataset.image_size=32", "dataset.num_classes=10",
                f"dataset.num_train={a.subset + 1000}", "dataset.val_size=1000", "trainer.epochs=1"]
    old = [f"trainer.threads={len(os.sched_getaffinity(0))}"]  # before issue 23: all cores, whatever else ran
    arms = {
        "idle": dict(), "busy": dict(busy=True), "busy1": dict(busy=True, args=["trainer.threads=1"]),
        "pair": dict(n=2), "spin-idle": dict(extra=SPIN, args=old), "spin-busy": dict(busy=True, extra=SPIN, args=old),
        "spin-pair": dict(n=2, extra=SPIN, args=old),
    }
    chosen = a.arms.split(",")
    print(f"CPU: {cpu_name()}; load {os.getloadavg()[0]:.2f} at the start", flush=True)
    best = {}
    with tempfile.TemporaryDirectory() as tmp:
        train_rates(args, tmp)  # warm the decoded-image cache
        for r in range(a.repeats):
            for name in chosen:
                spec = arms[name]
                value = train_rates(args + spec.get("args", []), tmp, spec.get("n", 1), spec.get("extra"),
                                    spec.get("busy", False))
                best[name] = max(best.get(name, 0.0), value)
                print(f"  round {r + 1} {name:<10} {value:7.0f} images/s", flush=True)
        print("best of each arm, images/s:")
        for name in chosen:
            print(f"  {name:<10} {best[name]:7.0f}")
        if {"busy", "busy1", "spin-busy"} <= best.keys():
            ref = max(best["busy1"], best["spin-busy"])
            print(f"busy / max(busy threads=1, busy spinning) = {best['busy'] / ref:.2f}  (target >= 0.90)")
        if {"idle", "spin-idle"} <= best.keys():
            print(f"idle / idle spinning = {best['idle'] / best['spin-idle']:.2f}  (target >= 0.95)")
        if {"pair", "idle"} <= best.keys():
            print(f"pair summed / one run alone = {best['pair'] / best['idle']:.2f}  (target >= 0.90)")
        startup, wall = first_step_seconds(args, tmp)
        print(f"second run on cached images: first training step {startup:.2f} s after launch (whole run {wall:.1f} s)")
        print(f"deeprob train --cfg job: {cfg_job_seconds():.2f} s")


if __name__ == "__main__":
    main()
