"""`deeprob compare PATH... [--csv] [--runs] [--metric M] [--out FILE.png]`: runs side by side, error bars over seeds.

One table and one figure for many runs, with 95 % intervals when the runs repeat a configuration over seeds.

    deeprob train -m activation=relu,tanh trainer.seed=0,1,2
    deeprob compare runs/multirun/2026-11-28/10-00-00

Reads every training run under the given folders (a folder holding .hydra/config.yaml and summary.json; init-stats
results and runs still in progress are skipped with a note, an unreadable file is skipped with a warning naming
it). Runs that differ only in `trainer.seed` (or in `resume`) form one configuration, each seed counted once (a
seed run twice: its newest completed run, with a warning naming the others): the table then shows each
configuration's mean ± 95 % t-interval over its completed seeds, and each configuration is compared with the best
one — paired by seed where both have the same seeds (deeprob_cli/stats.py) — saying whether the difference is
within noise.
Without repeated seeds it is one row per run, sorted by the metric. The figure draws validation accuracy and
training loss against epochs (per configuration: the mean over seeds with a 95 % band). Failed, diverged or
interrupted runs are listed with their status, never dropped, and never averaged in.
"""
import argparse
import codecs
import csv
import io
import json
import math
import os
import sys
from pathlib import Path

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from . import UserError, stats
from .config import flatten
from .exits import guarded

METRICS = ("status", "train_acc", "val_acc", "test_acc", "train_loss", "seconds")
NUMBERS = ("train_acc", "val_acc", "test_acc", "train_loss", "val_loss", "seconds", "epochs_completed", "steps")
LOWER_IS_BETTER = ("train_loss", "val_loss", "seconds")
SEED = "trainer.seed"
# not part of what a configuration is: the seed (the repetition), a run's free-form name, and resume (how a run
# was started: a resumed run, or a sweep re-run with resume=auto, continues its configuration unchanged)
NOT_CONFIGURATION = (SEED, "name", "resume")
# what a plain-ASCII terminal (LC_ALL=C, PYTHONIOENCODING=ascii) shows instead of the characters it cannot encode
ASCII = {"±": "+/-", "≥": ">=", "−": "-", "—": "-", "–": "-", "·": "*", "÷": "/", "…": "..."}


class BadRun(Exception):
    """A run folder whose summary.json or config.yaml cannot be read as what deeprob train writes."""


def warn(message: str):
    print(f"deeprob compare: warning: {message}", file=sys.stderr)


def say(text: str, file=None, end="\n"):
    """print; once the reader has gone (`deeprob compare … | head`), the rest of the output is dropped quietly
    (stdout onto /dev/null, Python's own advice) and the command goes on to write its figure."""
    file = file or sys.stdout
    try:
        print(text, file=file, end=end, flush=True)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), file.fileno())


def to_ascii(error: UnicodeEncodeError) -> tuple:
    """codecs error handler: ASCII stand-ins for the characters compare prints (± as +/-), ? for any other."""
    return "".join(ASCII.get(c, "?") for c in error.object[error.start:error.end]), error.end


codecs.register_error("deeprob-ascii", to_ascii)


# ---------------------------------------------------------------- reading runs

def find_runs(paths) -> tuple:
    """(training run folders, other folders with .hydra/config.yaml but no summary.json) under paths, sorted."""
    found = set()
    for path in map(Path, paths):
        if not path.exists():
            raise UserError(f"compare: {path} does not exist")
        found |= {p.parent.parent for p in path.rglob(".hydra/config.yaml")}
    runs = sorted(r for r in found if (r / "summary.json").is_file())
    if not runs:
        raise UserError(f"compare: no run folders (with .hydra/config.yaml and summary.json) under "
                        f"{', '.join(map(str, paths))}; is training still going, or is this init-stats output?")
    return runs, sorted(found - set(runs))


def read_summary(path: Path) -> dict:
    """summary.json checked for the types deeprob train writes."""
    try:
        summary = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise BadRun(f"{path}: not valid JSON ({e.msg} at line {e.lineno}); half-written or hand-edited?") from None
    except (OSError, UnicodeDecodeError) as e:
        raise BadRun(f"{path}: cannot be read ({e})") from None
    if not isinstance(summary, dict):
        raise BadRun(f"{path}: expected a JSON object, found {type(summary).__name__}")
    if not isinstance(summary.get("status"), str):
        raise BadRun(f"{path}: status is {summary.get('status')!r}; expected a string such as \"completed\"")
    for key in NUMBERS:
        value = summary.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise BadRun(f"{path}: {key} is {value!r} ({type(value).__name__}); expected a number or null")
    choices = summary.get("choices") or {}
    if not isinstance(choices, dict):
        raise BadRun(f"{path}: choices is {choices!r}; expected {{group: option or [options]}}")
    for group, choice in choices.items():
        if not (choice is None or isinstance(choice, str)
                or (isinstance(choice, list) and all(isinstance(x, str) for x in choice))):
            raise BadRun(f"{path}: choices.{group} is {choice!r}; expected an option name or a list of names")
    return summary


def read_config(path: Path) -> dict:
    try:
        config = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    except (yaml.YAMLError, OmegaConfBaseException, OSError, UnicodeDecodeError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BadRun(f"{path}: not a readable config ({first})") from None
    if not isinstance(config, dict):
        raise BadRun(f"{path}: expected a mapping of settings, found {type(config).__name__}")
    return config


def describe(run: Path) -> dict:
    """A run's settings (group choices and flattened values) and its final metrics."""
    summary = read_summary(run / "summary.json")
    config = read_config(run / ".hydra" / "config.yaml")
    settings = {k: json.dumps(v) if isinstance(v, list) else v for k, v in flatten(config).items()
                if k.rsplit(".", 1)[-1] not in ("_target_", "_partial_")}
    choices = summary.get("choices") or {}
    for group, choice in choices.items():
        settings[group] = ",".join(choice) if isinstance(choice, list) else choice
    return {"run": run, "settings": settings, "groups": set(choices), "summary": summary,
            **{m: summary.get(m) for m in METRICS}}


def read_rows(paths) -> list:
    """describe() of every readable training run under paths; a note for skipped folders, a warning per bad file."""
    runs, others = find_runs(paths)
    if others:
        shown = ", ".join(map(str, others[:3])) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
        print(f"deeprob compare: skipped {len(others)} folder(s) without summary.json (init-stats results or runs "
              f"still in progress): {shown}", file=sys.stderr)
    rows = []
    for run in runs:
        try:
            rows.append(describe(run))
        except BadRun as e:
            warn(f"skipped {e}")
    if not rows:
        raise UserError("compare: none of the runs could be read (see the warnings above)")
    return rows


# ---------------------------------------------------------------- what differs, grouping

def differing(rows) -> list:
    """Setting keys whose values differ between runs. A parameter of a group (optim.lr under optim) is left out
    when it differs only because the group's option differs; it stays when runs with the same option differ in it."""
    keys = sorted(set().union(*(r["settings"] for r in rows)))

    def value(r, k):
        return json.dumps(r["settings"].get(k), default=str)

    differ = [k for k in keys if k != "resume" and len({value(r, k) for r in rows}) > 1]
    groups = {k for k in differ if any(k in r["groups"] for r in rows)}
    shown = []
    for k in differ:
        group = k.split(".")[0]
        if k in groups or group not in groups:
            shown.append(k)
            continue
        by_option = {}
        for r in rows:
            by_option.setdefault(value(r, group), set()).add(value(r, k))
        if any(len(v) > 1 for v in by_option.values()):
            shown.append(k)
    return shown


def configuration(row) -> str:
    """The run's settings without the seed (and name), as one comparable string."""
    return json.dumps({k: v for k, v in sorted(row["settings"].items()) if k not in NOT_CONFIGURATION}, default=str)


def label(row, columns, fallback=None) -> str:
    return " ".join(f"{c}={setting(row['settings'].get(c))}" for c in columns) or fallback or row["run"].name


def group_runs(rows, columns) -> list:
    """[{label, settings, runs}]: one entry per configuration, the runs that differ only in their seed together,
    one run per seed (one_per_seed)."""
    groups = {}
    for r in rows:
        groups.setdefault(configuration(r), []).append(r)
    out = []
    for runs in groups.values():
        name = label(runs[0], [c for c in columns if c != SEED], "all runs")
        out.append({"label": name, "runs": one_per_seed(runs, name), "settings": runs[0]["settings"]})
    return out


def one_per_seed(runs, name: str) -> list:
    """The runs of one configuration with each seed once. A repeated seed is no new sample (one seed computes the
    same numbers again), so the table's n, its interval and the figure's band all count the seed once: its newest
    completed run (the newest run where none completed); a warning names the runs left out."""
    by_seed = {}
    for r in runs:
        by_seed.setdefault(json.dumps(r["settings"].get(SEED, str(r["run"])), default=str), []).append(r)
    kept = []
    for same in by_seed.values():
        same.sort(key=lambda r: (r["status"] == "completed", (r["run"] / "summary.json").stat().st_mtime))
        kept.append(same[-1])
        if len(same) > 1:
            left_out = ", ".join(str(r["run"]) for r in same[:-1])
            warn(f"{name}: seed {setting(same[-1]['settings'].get(SEED))} was run {len(same)} times; counted once, "
                 f"from {same[-1]['run']} ({same[-1]['status']}); left out: {left_out}")
    return [r for r in runs if r in kept]


def values(runs, metric) -> dict:
    """{seed: metric} of the completed runs with a finite value (a diverged run is never averaged in)."""
    out = {}
    for r in runs:
        v = r["summary"].get(metric)
        if r["status"] == "completed" and isinstance(v, (int, float)) and math.isfinite(v):
            out[r["settings"].get(SEED, r["run"].name)] = float(v)
    return out


def metric_of(row, metric):
    """The run's metric when it completed with a finite value, else None."""
    found = values([row], metric)
    return next(iter(found.values())) if found else None


def estimate(runs, metric):
    """stats.Estimate of the metric over the runs' completed seeds, or None when none completed."""
    found = values(runs, metric)
    return stats.one_sample(list(found.values())) if found else None


def statuses(runs) -> str:
    counts = {}
    for r in runs:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    return ", ".join(f"{n} {s}" for s, n in counts.items())


def sort_key(metric):
    """Best first (highest accuracy, lowest loss); runs without a value last."""
    lower = metric in LOWER_IS_BETTER

    def key(value):
        return (value is None, 0 if value is None else (value if lower else -value))
    return key


# ---------------------------------------------------------------- tables

def setting(value) -> str:
    """A setting as the user would type it: 0.001, not 0.0010."""
    return f"{value:g}" if isinstance(value, float) else fmt(value)


def fmt(value) -> str:
    """A cell: 4 decimals for ordinary numbers, scientific for huge or tiny ones (a diverged loss is 1.014e+20,
    not 21 digits), nan/inf spelled out."""
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, float):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    if value != 0 and not 1e-3 <= abs(value) < 1e5:
        return f"{value:.3e}"
    return f"{value:.4f}"


def render(header, body, as_csv: bool) -> str:
    if as_csv:
        buffer = io.StringIO()
        csv.writer(buffer).writerows([header, *body])
        return buffer.getvalue()
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(cells) + " |" for cells in body]) + "\n"


def table(rows, columns, as_csv=False) -> str:
    """One row per run."""
    header = ["run", *columns, *METRICS]
    body = [[str(r["run"]), *(setting(r["settings"].get(c)) for c in columns), *(fmt(r[m]) for m in METRICS)]
            for r in rows]
    return render(header, body, as_csv)


def config_table(configs, columns, metric, as_csv=False) -> str:
    """One row per configuration: n, seeds, status counts, and mean ± 95 % half-width of each metric."""
    columns = [c for c in columns if c != SEED]
    metrics = [metric] + [m for m in ("val_acc", "test_acc", "train_acc", "train_loss")
                          if m != metric and any(values(g["runs"], m) for g in configs)]
    header = [*columns, "n", "seeds", "status"]
    for m in metrics:
        header += [f"{m} mean", f"{m} ci95 low", f"{m} ci95 high"] if as_csv else [f"{m} (mean ± 95 %)"]
    body = []
    for g in configs:
        seeds = sorted(values(g["runs"], metric), key=str)
        cells = [*(setting(g["settings"].get(c)) for c in columns), str(len(seeds)), ",".join(map(str, seeds)),
                 statuses(g["runs"])]
        for m in metrics:
            e = estimate(g["runs"], m)
            finite = e is not None and math.isfinite(e.half_width)
            if as_csv:
                cells += ["", "", ""] if e is None else [fmt(e.mean), *((fmt(v) for v in e.ci95) if finite
                                                                        else ("", ""))]
            else:
                cells.append("" if e is None else fmt(e.mean) + (f" ± {fmt(e.half_width)}" if finite else
                                                                 " (1 seed)"))
        body.append(cells)
    return render(header, body, as_csv)


def difference(best, other, metric):
    """best − other as a stats.Estimate: paired over the seeds both have (≥ 2), else Welch's unpaired, else None."""
    a, b = values(best["runs"], metric), values(other["runs"], metric)
    shared = sorted(set(a) & set(b), key=str)
    if len(shared) >= 2:
        return stats.paired([a[s] for s in shared], [b[s] for s in shared])
    if len(a) >= 2 and len(b) >= 2:
        return stats.unpaired(list(a.values()), list(b.values()))
    return None


def noise_notes(configs, metric) -> list:
    """One line per configuration against the best one (configs sorted best first): the difference, its 95 %
    interval, and whether it is a real difference or within noise."""
    ranked = [g for g in configs if values(g["runs"], metric)]
    if len(ranked) < 2:
        return []
    best = ranked[0]
    e = estimate(best["runs"], metric)
    spread = f" ± {fmt(e.half_width)}" if math.isfinite(e.half_width) else ", 1 seed"
    lines = [f"best {metric}: {best['label']} ({fmt(e.mean)}{spread})"]
    for other in ranked[1:]:
        d = difference(best, other, metric)
        if d is None:
            lines.append(f"- vs {other['label']}: no interval (needs ≥ 2 completed seeds in each; "
                         f"sweep trainer.seed=0,1,2)")
            continue
        lo, hi = d.ci95
        real = hi < 0 if metric in LOWER_IS_BETTER else lo > 0  # best − other: < 0 for a loss, > 0 for accuracy
        shared = sorted(set(values(best["runs"], metric)) & set(values(other["runs"], metric)), key=str)
        design = (f"paired over seeds {','.join(map(str, shared))}" if d.design == "paired"
                  else "unpaired (Welch; the seeds differ)")
        verdict = ("a real difference (the interval excludes 0)" if real else
                   "identical on every seed" if lo == hi == 0 else
                   f"within noise (this design detects differences ≥ {fmt(d.detectable)})")
        sign = "+" if d.mean >= 0 else ""
        lines.append(f"- vs {other['label']}: {sign}{fmt(d.mean)} [{fmt(lo)}, {fmt(hi)}], {design}: {verdict}")
    return lines


# ---------------------------------------------------------------- figure

def scalars(folder: Path) -> tuple:
    """({tag: [(step, value)]}, steps per epoch or None) of one TensorBoard run folder's own event files."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util.tensor_util import make_ndarray

    from .monitor import EPOCH_LENGTH

    if not folder.is_dir():
        return {}, None
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    tags = acc.Tags()
    length = (int(make_ndarray(acc.Tensors(EPOCH_LENGTH)[0].tensor_proto)) if EPOCH_LENGTH in tags["tensors"]
              else None)
    return {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in tags["scalars"]}, length


def curves(run: Path) -> dict:
    """{"val/acc" | "train/loss": ([epochs], [values])} from the run's event files; x in epochs done.

    Step s (0-based) ends at epoch (s + 1) ÷ steps per epoch, and epoch k's metrics are logged at its last step,
    k · steps per epoch − 1, so they land on epoch k exactly. Steps per epoch: as the run recorded it, else (runs
    made before that record) one more than the step of the first epoch's train accuracy. Reads both layouts:
    one writer per split (RUN/train: loss, acc; RUN/val: acc) and, for runs made before it, all tags in RUN
    (train/loss, train/acc, val/acc)."""
    train, length = scalars(run / "train")
    if train:
        series = {"train/loss": train.get("loss"), "train/acc": train.get("acc"),
                  "val/acc": scalars(run / "val")[0].get("acc")}
    else:
        series = scalars(run)[0]
    if length is None and series.get("train/acc"):
        length = series["train/acc"][0][0] + 1
    if not length:
        return {}
    return {tag: ([(step + 1) / length for step, _ in series[tag]], [value for _, value in series[tag]])
            for tag in ("val/acc", "train/loss") if series.get(tag)}


def read_curves(rows) -> dict:
    out = {}
    for r in rows:
        try:
            out[r["run"]] = curves(r["run"])
        except Exception as e:  # noqa: BLE001 — TensorBoard's reader raises many types; the table still stands
            warn(f"{r['run']}: TensorBoard events unreadable ({type(e).__name__}: {e}); no curves for this run")
            out[r["run"]] = {}
    return out


def band(series) -> tuple:
    """(x, mean, low, high) over runs' (x, y) series, per x; low = high = mean where only one run has that x."""
    by_x = {}
    for xs, ys in series:
        for x, y in zip(xs, ys):
            if math.isfinite(y):
                by_x.setdefault(round(x, 9), []).append(y)
    xs = sorted(by_x)
    mean, low, high = [], [], []
    for x in xs:
        e = stats.one_sample(by_x[x])
        half = e.half_width if math.isfinite(e.half_width) else 0.0
        mean.append(e.mean)
        low.append(e.mean - half)
        high.append(e.mean + half)
    return xs, mean, low, high


def style(i: int) -> dict:
    """Ten hues (tab10 order: the first ten lines are as distinct as possible), then their light shades (tab20),
    then the same twenty dashed, dotted, dash-dotted: legible for 20+ lines."""
    import matplotlib

    hue, shade = i % 10, (i // 10) % 2
    return {"color": matplotlib.colormaps["tab20"](2 * hue + shade), "linestyle": ("-", "--", ":", "-.")[(i // 20) % 4]}


def draw(entries, title: str = "", notes=()):
    """The figure: validation accuracy and training loss against epochs, one line (with its 95 % band over seeds)
    per entry {label, curves: [one dict per run], completed}; the legend outside the axes, to the right; the title
    and the verdict lines (noise_notes) above the axes. Accuracy as a fraction, as the table prints it."""
    from matplotlib import ticker
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, max(4.5, 1.2 + 0.19 * len(entries))), layout="constrained")
    axes = fig.subplots(1, 2)
    finite_losses = []
    for i, entry in enumerate(entries):
        s = style(i)
        for ax, tag in zip(axes, ("val/acc", "train/loss")):
            series = [c[tag] for c in entry["curves"] if tag in c]
            if not series:
                continue
            xs, mean, low, high = band(series)
            ax.plot(xs, mean, marker="o" if tag == "val/acc" else None, markersize=3, linewidth=1.2, **s)
            if tag == "val/acc":  # an accuracy's interval ends at 0 and 1
                low, high = [max(v, 0.0) for v in low], [min(v, 1.0) for v in high]
            if len(series) > 1:
                ax.fill_between(xs, low, high, color=s["color"], alpha=0.15, linewidth=0)
            if tag == "train/loss" and entry["completed"]:
                finite_losses += [v for v in mean if math.isfinite(v) and v > 0]
        axes[0].plot([], [], label=entry["label"], **s)  # one legend entry per line, even without a curve
    axes[0].set(xlabel="epoch", ylabel="validation accuracy", title="validation accuracy (per epoch)")
    # a log axis only where the losses span a decade or more; within one decade a linear axis with plain ticks
    # (a log axis there labels 2, 3, 4 only, and final losses of 1.25-1.8 cannot be read)
    spread = max(finite_losses) / min(finite_losses) if finite_losses else 1.0
    log_scale = spread >= 10
    axes[1].set(xlabel="epoch", ylabel="training loss" + (" (log scale)" if log_scale else ""),
                title="training loss (per step)")
    if log_scale:
        axes[1].set_yscale("log")
        axes[1].yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))  # 0.6, 2 — not 6×10⁻¹
        axes[1].yaxis.set_minor_formatter(ticker.LogFormatter(labelOnlyBase=False, minor_thresholds=(1, 0.5)))
    else:
        axes[1].yaxis.set_major_locator(ticker.MaxNLocator(nbins=10))
    axes[0].xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    if finite_losses:  # a diverged run's 1e20 must not squash the completed runs' curves
        low, high = min(finite_losses), max(finite_losses)
        axes[1].set_ylim(*((low / 1.2, high * 1.5) if log_scale else (max(0.0, low - 0.1 * (high - low)),
                                                                        high + 0.1 * (high - low))))
    for ax in axes:
        ax.grid(alpha=0.3)
    if entries:
        several = any(len(e["curves"]) > 1 for e in entries)
        fig.legend(loc="outside right upper", fontsize=8, frameon=False,
                   title="mean and 95 % band over seeds" if several else None, title_fontsize=8)
    if title or notes:
        fig.suptitle("\n".join([title, *notes]).strip("\n"), fontsize=9 if notes else None)
    return fig


def plot(entries, out: Path, title: str = "", notes=()):
    """Draw and write the figure atomically: an interruption leaves the previous file (or none), never half."""
    from .checkpoint import atomic_write

    fig = draw(entries, title, notes)
    out.parent.mkdir(parents=True, exist_ok=True)
    image = io.BytesIO()
    fig.savefig(image, dpi=120, format=out.suffix.lower()[1:])
    atomic_write(out, image.getvalue())
    return fig


# ---------------------------------------------------------------- command

def main(args=None):
    """`deeprob compare`: the table and the curves, else one line and the code of exits.EXITS (Ctrl-C: exit 130);
    a plain-ASCII terminal gets ASCII stand-ins."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="deeprob-ascii")
    return guarded("compare", compare, args)


def compare(args=None):
    parser = argparse.ArgumentParser(prog="deeprob compare", description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", help="run folders or folders holding runs (e.g. a sweep)")
    parser.add_argument("--csv", action="store_true", help="print CSV instead of a markdown table")
    parser.add_argument("--metric", default="val_acc", choices=("val_acc", "test_acc", "train_acc", "train_loss"),
                        help="what to sort and compare by (default val_acc)")
    parser.add_argument("--runs", action="store_true", help="one row per run even when seeds repeat")
    parser.add_argument("--out", help="where to write the curves PNG (default: <first path>/compare.png)")
    ns = parser.parse_args(args)
    out = Path(ns.out) if ns.out else Path(ns.paths[0]) / "compare.png"
    if out.suffix.lower() not in (".png", ".pdf", ".svg"):
        raise UserError(f"--out: {str(out)!r} is not allowed; expected a file name ending in .png, .pdf or .svg")
    rows = read_rows(ns.paths)
    key = sort_key(ns.metric)
    rows.sort(key=lambda r: key(metric_of(r, ns.metric)))
    columns = differing(rows)
    configs = group_runs(rows, columns)
    repeated = any(len(g["runs"]) > 1 for g in configs)
    by_run = read_curves(rows)
    if repeated and not ns.runs:
        configs.sort(key=lambda g: key(estimate(g["runs"], ns.metric).mean if values(g["runs"], ns.metric) else None))
        say(config_table(configs, columns, ns.metric, ns.csv), end="")
        notes = noise_notes(configs, ns.metric)  # the verdicts, also in the figure's title
        if notes:  # kept out of a CSV on stdout
            say("\n".join(notes) if ns.csv else "\n" + "\n".join(notes), file=sys.stderr if ns.csv else None)
        entries = []
        for g in configs:
            done = [r for r in g["runs"] if r["status"] == "completed"]
            note = "" if len(done) == len(g["runs"]) else f" [{statuses(g['runs'])}]"
            entries.append({"label": f"{g['label']} (n={len(values(g['runs'], ns.metric))}){note}",
                            "curves": [by_run[r["run"]] for r in done or g["runs"]], "completed": bool(done)})
    else:
        say(table(rows, columns, ns.csv), end="")
        if not repeated:
            print("deeprob compare: one run per configuration, so no error bars; repeat each over seeds "
                  "(add trainer.seed=0,1,2 to the sweep) for 95 % intervals", file=sys.stderr)
        entries = [{"label": label(r, columns) + ("" if r["status"] == "completed" else f" [{r['status']}]"),
                    "curves": [by_run[r["run"]]], "completed": r["status"] == "completed"} for r in rows]
    n = len(configs) if repeated and not ns.runs else len(rows)
    title = (f"deeprob compare: {n} {'configurations' if repeated and not ns.runs else 'runs'}, by {ns.metric}"
             f" (accuracy as a fraction)")
    try:
        plot(entries, out, title, notes if repeated and not ns.runs else ())
    except OSError as e:  # e.g. a read-only folder: the table above is still printed
        raise UserError(f"--out: cannot write {out} ({e.strerror or e}); choose another --out") from None
    print(f"curves: {out}", file=sys.stderr)
