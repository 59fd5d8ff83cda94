"""`deeprob compare PATH... [--csv] [--out FILE.png]`: one table and one figure for many runs.

Reads every run under the given folders (single runs and sweeps alike: any folder holding .hydra/), prints a
table sorted by val accuracy whose columns are the settings that differ between the runs plus the final
metrics, and draws each run's val-accuracy and train-loss curves (from its TensorBoard events) into a PNG.
Runs that failed, diverged or are unfinished are listed with their status, never dropped.
"""
import argparse
import csv
import io
import json
import sys
from pathlib import Path

from omegaconf import OmegaConf

from . import UserError
from .config import flatten

METRICS = ("status", "train_acc", "val_acc", "test_acc", "train_loss", "seconds")


def find_runs(paths):
    """Every run folder (one holding .hydra/config.yaml) under the given paths, sorted."""
    runs = set()
    for path in map(Path, paths):
        if not path.exists():
            raise UserError(f"compare: {path} does not exist")
        runs |= {p.parent.parent for p in path.rglob(".hydra/config.yaml")}
    if not runs:
        raise UserError(f"compare: no run folders (with .hydra/config.yaml) under {', '.join(map(str, paths))}")
    return sorted(runs)


def describe(run: Path) -> dict:
    """A run's settings (group choices and flattened values) and its final metrics."""
    summary_path = run / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {"status": "unfinished"}
    config = OmegaConf.to_container(OmegaConf.load(run / ".hydra" / "config.yaml"), resolve=False)
    settings = {k: json.dumps(v) if isinstance(v, list) else v for k, v in flatten(config).items()
                if k.rsplit(".", 1)[-1] not in ("_target_", "_partial_")}
    choices = summary.get("choices") or {}
    for group, choice in choices.items():
        settings[group] = ",".join(choice) if isinstance(choice, list) else choice
    return {"run": run, "settings": settings, "groups": set(choices), **{m: summary.get(m) for m in METRICS}}


def differing(rows) -> list:
    """Setting keys whose values differ between runs; a group's name hides the parameters it brings along."""
    keys = sorted(set().union(*(r["settings"] for r in rows)))
    differ = [k for k in keys if len({json.dumps(r["settings"].get(k), default=str) for r in rows}) > 1]
    groups = {k for k in differ if any(k in r["groups"] for r in rows)}
    return [k for k in differ if k in groups or k.split(".")[0] not in groups]


def table(rows, columns, as_csv=False) -> str:
    header = ["run", *columns, *METRICS]
    body = []
    for r in rows:
        cells = [str(r["run"]), *(r["settings"].get(c, "") for c in columns), *(r[m] for m in METRICS)]
        body.append(["" if c is None else f"{c:.4f}" if isinstance(c, float) else str(c) for c in cells])
    if as_csv:
        buffer = io.StringIO()
        csv.writer(buffer).writerows([header, *body])
        return buffer.getvalue()
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(cells) + " |" for cells in body]) + "\n"


def curves(run: Path):
    """{tag: ([steps], [values])} for val/acc and train/loss from the run's event files."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run), size_guidance={"scalars": 0})
    acc.Reload()
    tags = acc.Tags()["scalars"]
    return {t: ([e.step for e in acc.Scalars(t)], [e.value for e in acc.Scalars(t)])
            for t in ("val/acc", "train/loss") if t in tags}


def plot(rows, columns, out: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for r in rows:
        label = " ".join(f"{c}={r['settings'].get(c)}" for c in columns) or r["run"].name
        if r["status"] != "completed":
            label += f" [{r['status']}]"
        for ax, tag in zip(axes, ("val/acc", "train/loss")):
            steps, values = curves(r["run"]).get(tag, ([], []))
            ax.plot(steps, values, marker="o" if tag == "val/acc" else None, markersize=3, label=label)
    for ax, title in zip(axes, ("validation accuracy", "training loss")):
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[1].set_yscale("log")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main(args=None):
    parser = argparse.ArgumentParser(prog="deeprob compare", description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", help="run folders or folders holding runs (e.g. a sweep)")
    parser.add_argument("--csv", action="store_true", help="print CSV instead of a markdown table")
    parser.add_argument("--out", help="where to write the curves PNG (default: <first path>/compare.png)")
    ns = parser.parse_args(args)
    try:
        rows = [describe(run) for run in find_runs(ns.paths)]
    except UserError as e:
        print(f"deeprob compare: error: {e}", file=sys.stderr)
        sys.exit(2)
    rows.sort(key=lambda r: (r["val_acc"] is None, -(r["val_acc"] or 0)))
    columns = differing(rows)
    print(table(rows, columns, ns.csv), end="")
    out = Path(ns.out) if ns.out else Path(ns.paths[0]) / "compare.png"
    plot(rows, columns, out)
    print(f"curves: {out}", file=sys.stderr)
