"""`deeprob lab CLAIM [overrides]`: one claim of the lecture reproduced by one command, with a figure and a verdict.

    deeprob lab --list
    deeprob lab relu_speed dataset=image_folder dataset.root=/tmp/data/cifar10-jpeg
    deeprob lab dropout dataset=synthetic trainer.epochs=1          # overrides reach every sub-run
    deeprob lab --all dataset=image_folder dataset.root=PATH out=runs/lecture     # what `make lecture` runs

Each claim is a record below: the lecture's statement, the threshold that decides it (fixed here, with where
it comes from, before any run), the ordinary `deeprob train` / `deeprob init-stats` commands it runs (built
from conf/experiment/lab_*.yaml presets and -m sweeps, run as subprocesses of the real CLI into the claim's
folder), and a measure function that reads the runs' summary.json, checkpoints, TensorBoard events or
stats.json. Quantities no training run logs (per-layer gradients at init, gradient signs, output variance
through residual blocks) are measured here in-process on models composed and built exactly as train.py does.
The claim's folder (default runs/lab/<claim>/<date>-<time>, or out=PATH) receives the sub-runs, figure.png,
the numbers as TensorBoard scalars and verdict.json = {claim, statement, holds, numbers, threshold, commands}.
A claim that does not hold is reported as such.
"""
import json
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable

from . import UserError

USAGE = ("usage: deeprob lab CLAIM... [overrides] [out=DIR] | deeprob lab --all [overrides] [out=DIR] "
         "[--report FILE] | deeprob lab --report FILE (re-render from the verdicts in its folder) | deeprob lab --list")


@dataclass(frozen=True)
class Claim:
    name: str
    statement: str  # the lecture's words
    measurement: str  # what is measured, in one line (`deeprob lab --list`)
    threshold: dict  # the bounds that decide `holds`, fixed before any run
    justification: str  # where the bounds come from
    measure: Callable  # (claim folder, overrides) -> (numbers, holds); draws figure.png
    runs: tuple = ()  # (sub-folder, deeprob arguments): ordinary CLI runs, -m for sweeps
    in_process: str = ""  # what measure() computes itself, when it is more than reading the runs
    extra: dict = field(default_factory=dict)


# ---------------------------------------------------------------- running a claim

# the keys `deeprob init-stats` has (conf/init_stats.yaml); a user's other overrides are for training runs
INIT_STATS_KEYS = ("activation", "init", "init_stats", "trainer.seed")


def for_command(command: str, overrides) -> list:
    """The user's overrides that the sub-command has keys for: init-stats its own, train all but init_stats.*."""
    def key(o):
        return o.split("=", 1)[0].lstrip("+~")

    if command == "init-stats":
        return [o for o in overrides if key(o) == "trainer.seed" or key(o).split(".")[0] in INIT_STATS_KEYS]
    return [o for o in overrides if key(o).split(".")[0] != "init_stats"]


def run_command(args, folder: Path, overrides) -> list:
    """The deeprob command line of one sub-run writing into folder: the claim's arguments, then the user's."""
    sweep = "-m" in args
    where = f"hydra.sweep.dir={folder}" if sweep else f"hydra.run.dir={folder}"
    return [*args, *for_command(args[0], overrides), where]


def run_claim(claim: Claim, overrides, out: Path, log=print) -> dict:
    """Run the claim's sub-runs into out, measure, draw, write verdict.json; return the verdict."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise UserError(f"out: {out} already holds results; choose another folder")
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    commands = []
    for name, args in claim.runs:
        argv = run_command(args, out / name, overrides)
        commands.append(shlex.join(["deeprob", *argv]))
        log(f"[lab {claim.name}] {commands[-1]}")
        with open(out / f"{name}.log", "w") as sink:
            code = subprocess.run([sys.executable, "-m", "deeprob_cli", *argv], stdout=sink,
                                  stderr=subprocess.STDOUT).returncode
        if code != 0:
            tail = (out / f"{name}.log").read_text().strip().splitlines()[-1:] or [""]
            raise UserError(f"{claim.name}: `{commands[-1]}` exited {code}: {tail[0]} (log: {out / name}.log)")
    if claim.in_process:
        commands.append(f"in-process: {claim.in_process} ({shlex.join(overrides) or 'no overrides'})")
    numbers, holds = claim.measure(out, list(overrides))
    verdict = {"claim": claim.name, "statement": claim.statement, "holds": bool(holds), "numbers": numbers,
               "threshold": claim.threshold, "justification": claim.justification, "commands": commands,
               "figure": "figure.png", "overrides": list(overrides),
               "seconds": round(time.perf_counter() - started, 1)}
    (out / "verdict.json").write_text(json.dumps(verdict, indent=2, default=_plain) + "\n")
    log_numbers(out, numbers)
    log(f"[lab {claim.name}] {'HOLDS' if holds else 'DOES NOT HOLD'}: {headline(verdict)}  ({out})")
    return json.loads((out / "verdict.json").read_text())


def _plain(value):
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def log_numbers(out: Path, numbers: dict):
    """Every number of the verdict as a TensorBoard scalar lab/<key> at step 0."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(out))
    for key, value in flatten(numbers).items():
        writer.add_scalar(f"lab/{key}", value, 0)
    writer.close()


def flatten(node, prefix="") -> dict:
    """{'a/b/0': number} for every int/float/bool inside nested dicts and lists."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    flat = {}
    for key, value in items:
        if isinstance(value, (dict, list)):
            flat.update(flatten(value, f"{prefix}{key}/"))
        elif isinstance(value, (int, float)) and value is not None:
            flat[f"{prefix}{key}"] = float(value)
    return flat


def headline(verdict: dict) -> str:
    """The claim's deciding numbers in one line."""
    keys = CLAIMS[verdict["claim"]].extra.get("headline", ())
    numbers = verdict["numbers"]
    return ", ".join(f"{k} {_fmt(numbers.get(k))}" for k in keys) or "see verdict.json"


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


# ---------------------------------------------------------------- reading runs

def jobs(sweep: Path) -> list:
    """[(overrides {key: value}, job folder)] of a sweep's jobs, in job order."""
    from omegaconf import OmegaConf

    found = []
    for path in Path(sweep).glob("*/.hydra/overrides.yaml"):
        pairs = dict(o.split("=", 1) for o in OmegaConf.load(path) if "=" in o)
        found.append((pairs, path.parent.parent))
    return sorted(found, key=lambda j: int(j[1].name) if j[1].name.isdigit() else 1 << 30)


def job(sweep: Path, **match) -> Path:
    """The job folder of sweep whose overrides hold every key=value of match (keys with '.' as '__')."""
    want = {k.replace("__", "."): str(v) for k, v in match.items()}
    for pairs, folder in jobs(sweep):
        if all(pairs.get(k) == v for k, v in want.items()):
            return folder
    raise UserError(f"lab: no job with {want} in {sweep}")


def summary(run: Path) -> dict:
    path = Path(run) / "summary.json"
    return json.loads(path.read_text()) if path.is_file() else {"status": "unfinished"}


def scalars(run: Path, prefix: str) -> dict:
    """{tag: ([steps], [values])} of the run's TensorBoard scalars whose tag starts with prefix."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run), size_guidance={"scalars": 0})
    acc.Reload()
    return {t: ([e.step for e in acc.Scalars(t)], [e.value for e in acc.Scalars(t)])
            for t in acc.Tags()["scalars"] if t.startswith(prefix)}


def compose_cfg(overrides):
    """The real conf/ tree composed with overrides, as `deeprob train` would see it."""
    from hydra import compose, initialize_config_dir

    from .config import CONFIG_DIR

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=for_command("train", overrides))


def restore_run(run: Path, with_data=True):
    """(model in eval mode, preprocess, data) of a finished run, from its checkpoints/last.pt."""
    import torch
    from omegaconf import OmegaConf

    from .checkpoint import load_checkpoint
    from .data import load_data
    from .evaluate import restore

    state = load_checkpoint(Path(run) / "checkpoints" / "last.pt")
    cfg = OmegaConf.create(state["config"])
    model, preprocess = restore(state, cfg, torch.device("cpu"))
    return model.eval(), preprocess, load_data(cfg.dataset) if with_data else None


def data_batch(cfg, n: int):
    """(preprocessed training images, labels, data) of the first n training images, as train.py feeds them."""
    from .config import build
    from .data import load_data

    data = load_data(cfg.dataset)
    preprocess = build(cfg.preprocess, "preprocess").fit(data.train.images)
    x = preprocess(data.train.images[:n].float().div(255))
    return x, data.train.labels[:n], data, preprocess


def build_model(cfg, x, data, preprocess):
    """The model of cfg, assembled and initialized by the one recipe train.py uses."""
    from .assemble import assemble

    return assemble(cfg, preprocess.output_shape(data.shape), len(data.classes), batch=x).model


def figure(*shape, size=(6, 4)):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(*shape, figsize=size, squeeze=False)
    return fig, axes


def save(fig, folder: Path, title: str):
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(folder / "figure.png", dpi=100)
    import matplotlib.pyplot as plt

    plt.close(fig)


def _r(value, digits=5):
    return None if value is None else round(float(value), digits)


# ---------------------------------------------------------------- the claims' measurements

SATURATION_BASE = ["experiment=lab_mlp", "model.depth=8"]


def measure_saturation(folder: Path, overrides):
    """Per-layer weight-gradient norms of one batch's loss through a deep MLP at init, per activation."""
    import torch
    import torch.nn.functional as F

    base = compose_cfg([*SATURATION_BASE, *overrides])
    x, y, data, preprocess = data_batch(base, 256)
    norms = {}
    for name in ("sigmoid", "tanh", "relu"):
        cfg = compose_cfg([*SATURATION_BASE, f"activation={name}", *overrides])
        torch.manual_seed(cfg.trainer.seed)
        model = build_model(cfg, x, data, preprocess)
        F.cross_entropy(model(x), y).backward()
        norms[name] = [m.weight.grad.norm().item() for m in model if isinstance(m, torch.nn.Linear)]
    ratio = norms["sigmoid"][0] / norms["relu"][0]
    numbers = {"grad_norm_per_layer": norms, "first_layer_sigmoid_over_relu": ratio,
               "first_layer_tanh_over_relu": norms["tanh"][0] / norms["relu"][0],
               "sigmoid_first_over_last": norms["sigmoid"][0] / norms["sigmoid"][-1]}
    fig, axes = figure(1, 1)
    for name, values in norms.items():
        axes[0, 0].semilogy(range(1, len(values) + 1), values, marker="o", label=name)
    axes[0, 0].set(xlabel="layer (1 = first, last = classifier)", ylabel="‖∂L/∂W‖")
    axes[0, 0].legend()
    save(fig, folder, f"saturation: sigmoid/relu first-layer gradient {ratio:.2g}")
    return numbers, ratio <= CLAIMS["saturation"].threshold["first_layer_sigmoid_over_relu_max"]


SIGN_BASE = ["experiment=lab_mlp", "model.depth=2"]


def measure_not_zero_centred(folder: Path, overrides):
    """Share of fc2's weight-gradient rows whose entries share one sign, per example, fc2 fed sigmoid vs tanh."""
    import torch
    import torch.nn.functional as F

    base = compose_cfg([*SIGN_BASE, *overrides])
    x, y, data, preprocess = data_batch(base, 32)
    numbers, per_example = {}, {}
    for name in ("sigmoid", "tanh"):
        cfg = compose_cfg([*SIGN_BASE, f"activation={name}", *overrides])
        torch.manual_seed(cfg.trainer.seed)
        model = build_model(cfg, x, data, preprocess)
        shares = []
        for i in range(len(x)):  # one example at a time: the lecture's gradient of one input
            model.zero_grad()
            F.cross_entropy(model(x[i:i + 1]), y[i:i + 1]).backward()
            shares.append(one_sign_rows(model.fc2.weight.grad))
        model.zero_grad()
        F.cross_entropy(model(x), y).backward()  # the mini-batch average mixes signs (reported, not judged)
        per_example[name] = shares
        numbers[f"{name}_one_sign_rows"] = sum(shares) / len(shares)
        numbers[f"{name}_one_sign_rows_batch"] = one_sign_rows(model.fc2.weight.grad)
    t = CLAIMS["not_zero_centred"].threshold
    holds = numbers["sigmoid_one_sign_rows"] >= t["sigmoid_min"] and numbers["tanh_one_sign_rows"] <= t["tanh_max"]
    fig, axes = figure(1, 1)
    for name, shares in per_example.items():
        axes[0, 0].plot(shares, marker="o", linestyle="none", label=f"fc2 fed {name} outputs")
    axes[0, 0].set(xlabel="example", ylabel="share of rows of ∂L/∂W with one sign", ylim=(-0.05, 1.05))
    axes[0, 0].legend()
    save(fig, folder, "not zero-centred: one-sign gradient rows per example")
    return numbers, holds


def one_sign_rows(grad) -> float:
    """Share of rows whose entries are all ≥ 0 or all ≤ 0."""
    return ((grad >= 0).all(1) | (grad <= 0).all(1)).float().mean().item()


def smooth(values, window: int):
    """Trailing mean over window steps."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v - (values[i - window] if i >= window else 0.0)
        out.append(total / min(i + 1, window))
    return out


def measure_relu_speed(folder: Path, overrides):
    """Steps each activation needs to reach the training loss tanh ends at (smoothed per-step train/loss)."""
    curves = {}
    for name in ("relu", "tanh"):
        steps, values = scalars(job(folder / "sweep", activation=name), "train/loss")["train/loss"]
        curves[name] = (steps, smooth(values, max(1, len(values) // 10)))
    target = curves["tanh"][1][-1]
    reached = {name: next((s for s, v in zip(*c) if v <= target), None) for name, c in curves.items()}
    speedup = reached["tanh"] / reached["relu"] if reached["relu"] else None
    numbers = {"target_loss": target, "relu_final_loss": curves["relu"][1][-1], "relu_steps": reached["relu"],
               "tanh_steps": reached["tanh"], "speedup": speedup, "steps": len(curves["tanh"][0]),
               "val_acc": {n: summary(job(folder / "sweep", activation=n)).get("val_acc") for n in curves}}
    fig, axes = figure(1, 1)
    for name, (steps, values) in curves.items():
        axes[0, 0].plot(steps, values, label=name)
        if reached[name] is not None:
            axes[0, 0].axvline(reached[name], linestyle=":", color=axes[0, 0].lines[-1].get_color())
    axes[0, 0].axhline(target, color="grey", linestyle="--", label="tanh's final loss")
    axes[0, 0].set(xlabel="step", ylabel="train loss (smoothed)")
    axes[0, 0].legend()
    save(fig, folder, f"relu_speed: ReLU reaches tanh's final loss {speedup:.2g}x sooner" if speedup else
         "relu_speed: ReLU never reaches tanh's final loss in this run")
    return numbers, speedup is not None and speedup >= CLAIMS["relu_speed"].threshold["speedup_min"]


DEAD_CONDITIONS = {"baseline": ("lr", {"optim.lr": "0.05"}), "large_lr": ("lr", {"optim.lr": "1.0"}),
                   "negative_bias": ("bias", {"init.bias": "-1.0"}), "bias_0.01": ("bias", {"init.bias": "0.01"})}


def measure_dead_relu(folder: Path, overrides):
    """Dead-unit fraction (mean over layers, last snapshot) per condition, ReLU vs leaky ReLU."""
    dead = {}
    for condition, (sweep, match) in DEAD_CONDITIONS.items():
        for act in ("relu", "leaky_relu"):
            run = job(folder / sweep, activation=act, **{k.replace(".", "__"): v for k, v in match.items()})
            last = [values[-1] for steps, values in scalars(run, "dead/").values()]
            dead.setdefault(condition, {})[act] = sum(last) / len(last) if last else None
            dead[condition][f"{act}_status"] = summary(run).get("status")
    t = CLAIMS["dead_relu"].threshold
    relu_bad = [dead[c]["relu"] for c in ("large_lr", "negative_bias")]
    leaky = [dead[c]["leaky_relu"] for c in DEAD_CONDITIONS]
    holds = (all(v is not None and v >= t["relu_dead_min"] for v in relu_bad)
             and all(v is not None and v <= t["leaky_dead_max"] for v in leaky))
    numbers = {"dead_fraction": dead, "relu_large_lr": relu_bad[0], "relu_negative_bias": relu_bad[1],
               "leaky_max": max((v for v in leaky if v is not None), default=None)}
    fig, axes = figure(1, 1, size=(7, 4))
    width = 0.38
    for k, act in enumerate(("relu", "leaky_relu")):
        axes[0, 0].bar([i + k * width for i in range(len(dead))], [dead[c][act] or 0 for c in dead], width, label=act)
    axes[0, 0].set_xticks([i + width / 2 for i in range(len(dead))], list(dead))
    axes[0, 0].set(ylabel="dead units (mean over layers, last snapshot)", ylim=(0, 1))
    axes[0, 0].legend()
    save(fig, folder, "dead_relu: share of units that never activate")
    return numbers, holds


INIT_CASES = {"normal_0.01_tanh": ("small", {"init.std": "0.01"}), "normal_0.05_tanh": ("small", {"init.std": "0.05"}),
              "xavier_tanh": ("scaled", {"init": "xavier", "activation": "tanh"}),
              "xavier_relu": ("scaled", {"init": "xavier", "activation": "relu"}),
              "kaiming_relu": ("scaled", {"init": "kaiming", "activation": "relu"})}


def measure_init_depth(folder: Path, overrides):
    """Each case's per-layer std and saturation from its stats.json; the lecture's five verdicts."""
    stats = {}
    for case, (sweep, match) in INIT_CASES.items():
        run = job(folder / sweep, **{k.replace(".", "__"): v for k, v in match.items()})
        stats[case] = json.loads((run / "stats.json").read_text())
    std = {c: [s["std"] for s in layers] for c, layers in stats.items()}
    t = CLAIMS["init_depth"].threshold
    checks = {"normal_0.01_tanh_shrinks": std["normal_0.01_tanh"][-1] < t["shrink_last_std_max"],
              "normal_0.05_tanh_saturates": stats["normal_0.05_tanh"][-1]["saturated"] >= t["saturate_last_min"],
              "xavier_tanh_fits": (std["xavier_tanh"][-1] > t["xavier_tanh_last_std_min"]
                                   and stats["xavier_tanh"][-1]["saturated"] <= t["xavier_tanh_saturated_max"]),
              "xavier_relu_collapses": std["xavier_relu"][-1] < t["collapse_ratio_max"] * std["xavier_relu"][0],
              "kaiming_relu_fits": t["kaiming_ratio"][0] < std["kaiming_relu"][-1] / std["kaiming_relu"][0]
              < t["kaiming_ratio"][1]}
    numbers = {"std_per_layer": std, "saturated_last": {c: s[-1]["saturated"] for c, s in stats.items()},
               "checks": checks}
    fig, axes = figure(1, 1)
    for case, values in std.items():
        axes[0, 0].semilogy(range(1, len(values) + 1), values, marker="o", label=case)
    axes[0, 0].set(xlabel="layer", ylabel="std of the activations")
    axes[0, 0].legend(fontsize=8)
    save(fig, folder, "init_depth: activation std through the stack right after init")
    return numbers, all(checks.values())


def measure_zero_init(folder: Path, overrides):
    """Spread between the units (rows) of each hidden layer's weights after training, init=zeros vs kaiming."""
    numbers, weights = {}, {}
    for init in ("zeros", "kaiming"):
        model, _, _ = restore_run(job(folder / "sweep", init=init), with_data=False)
        hidden = [m.weight.detach() for name, m in model.named_children() if name.startswith("fc")]
        spreads = [((w - w[:1]).abs().max() / w.abs().max().clamp_min(1e-30)).item() for w in hidden]
        numbers[init] = {"unit_spread": spreads, "weight_norm": [w.norm().item() for w in hidden]}
        weights[init] = hidden[0]
    t = CLAIMS["zero_init"].threshold
    holds = (max(numbers["zeros"]["unit_spread"]) <= t["zeros_spread_max"]
             and min(numbers["kaiming"]["unit_spread"]) >= t["kaiming_spread_min"]
             and numbers["zeros"]["weight_norm"][0] > 0)
    numbers["zeros_max_spread"] = max(numbers["zeros"]["unit_spread"])
    numbers["kaiming_min_spread"] = min(numbers["kaiming"]["unit_spread"])
    fig, axes = figure(1, 2, size=(9, 3.5))
    for ax, (init, w) in zip(axes[0], weights.items()):
        image = ax.imshow(w[:16, :48].numpy(), aspect="auto", cmap="coolwarm")
        fig.colorbar(image, ax=ax)
        ax.set(title=f"init={init}: fc1 weights after training", xlabel="input", ylabel="unit")
    save(fig, folder, "zero_init: with zeros every unit of a layer stays the same")
    return numbers, holds


def measure_normalization(folder: Path, overrides):
    """Mean |Δ val loss| of a trained linear classifier under the same relative random weight perturbations."""
    import torch
    import torch.nn.functional as F

    t = CLAIMS["normalization"].threshold
    changes, numbers = {}, {}
    for name in ("none", "standardize"):
        model, preprocess, data = restore_run(job(folder / "sweep", preprocess=name))
        split = data.val if data.val is not None else data.train
        x, y = preprocess(split.images[:1000].float().div(255)), split.labels[:1000]
        params = [p for n, p in model.named_parameters() if n.endswith("weight")]
        with torch.no_grad():
            base = F.cross_entropy(model(x), y).item()
            generator, deltas = torch.Generator().manual_seed(0), []
            for _ in range(t["draws"]):
                noise = [torch.randn(p.shape, generator=generator) for p in params]
                scale = t["epsilon"] * torch.sqrt(sum(p.pow(2).sum() for p in params) / sum(n.pow(2).sum() for n in noise))
                for p, n in zip(params, noise):
                    p.add_(scale * n)
                deltas.append(abs(F.cross_entropy(model(x), y).item() - base))
                for p, n in zip(params, noise):
                    p.sub_(scale * n)
        changes[name] = deltas
        numbers[f"{name}_loss"] = base
        numbers[f"{name}_mean_loss_change"] = sum(deltas) / len(deltas)
    ratio = numbers["none_mean_loss_change"] / max(numbers["standardize_mean_loss_change"], 1e-12)
    numbers["raw_over_standardized"] = ratio
    fig, axes = figure(1, 1)
    axes[0, 0].boxplot(list(changes.values()), tick_labels=["raw (preprocess=none)", "standardized"])
    axes[0, 0].set(ylabel=f"|Δ val loss| for ‖ΔW‖ = {t['epsilon']}·‖W‖")
    save(fig, folder, f"normalization: raw inputs {ratio:.2g}x as sensitive")
    return numbers, ratio >= t["ratio_min"]


RESNET_BASE = ["model=resnet", "model.depth=56"]


def measure_residual_init(folder: Path, overrides):
    """Variance of the stem's and every block's output on one batch at init (train mode), with and without
    init.zero_residual."""
    import torch

    variances = {}
    for zero in ("false", "true"):
        cfg = compose_cfg([*RESNET_BASE, f"init.zero_residual={zero}", *overrides])
        x, _, data, preprocess = data_batch(cfg, 64)
        torch.manual_seed(cfg.trainer.seed)
        model = build_model(cfg, x, data, preprocess).train()
        seen = []
        hooks = [m.register_forward_hook(lambda m, i, o: seen.append(o.var().item()))
                 for m in (model.stem, *model.blocks)]
        with torch.no_grad():
            model(x)
        for h in hooks:
            h.remove()
        variances[zero] = seen
    n = (cfg.model.depth - 2) // 6  # blocks of the first stage (identity shortcuts)
    grow = {z: v[n] / v[0] for z, v in variances.items()}
    t = CLAIMS["residual_init"].threshold
    monotone = all(b > a for a, b in zip(variances["false"][:n + 1], variances["false"][1:n + 1]))
    holds = monotone and grow["false"] >= t["growth_min"] and abs(grow["true"] - 1) <= t["zero_residual_tolerance"]
    numbers = {"variance": {"plain": variances["false"], "zero_residual": variances["true"]},
               "stage1_growth": grow["false"], "stage1_growth_zero_residual": grow["true"],
               "stage1_blocks": n, "stage1_monotone": monotone}
    fig, axes = figure(1, 1)
    for zero, label in (("false", "kaiming"), ("true", "kaiming + init.zero_residual")):
        axes[0, 0].semilogy(variances[zero], marker="o", markersize=3, label=label)
    axes[0, 0].axvspan(0, n, color="grey", alpha=0.15, label="stage 1 (identity shortcuts)")
    axes[0, 0].set(xlabel="0 = stem, then block", ylabel="Var(block output)")
    axes[0, 0].legend()
    save(fig, folder, f"residual_init: stage-1 variance ×{grow['false']:.2g} vs ×{grow['true']:.2g}")
    return numbers, holds


def accuracy_curves(runs: dict, folder: Path, title: str, extra=None):
    """val/acc curves of several runs (and bars of `extra` {label: value} when given)."""
    fig, axes = figure(1, 1)
    for label, run in runs.items():
        curve = scalars(run, "val/acc").get("val/acc", ([], []))
        axes[0, 0].plot(*curve, marker="o", markersize=3, label=label)
    axes[0, 0].set(xlabel="step", ylabel="val accuracy")
    axes[0, 0].legend(fontsize=8)
    save(fig, folder, title)


def measure_dropout(folder: Path, overrides):
    """Train accuracy (eval mode, whole training split) minus val accuracy, regularizer=none vs dropout."""
    from .evaluate import evaluate

    numbers, runs = {}, {}
    for name in ("none", "dropout"):
        runs[name] = run = job(folder / "sweep", regularizer=name)
        model, preprocess, data = restore_run(run)
        train_acc = evaluate(model, data.train, preprocess, "cpu")[1]
        val_acc = summary(run)["val_acc"]
        numbers[name] = {"train_acc": train_acc, "val_acc": val_acc, "gap": train_acc - val_acc}
        chance = 1 / len(data.classes)
    numbers["gap_none"], numbers["gap_dropout"] = numbers["none"]["gap"], numbers["dropout"]["gap"]
    t = CLAIMS["dropout"].threshold
    learned = numbers["dropout"]["val_acc"] >= t["learned_over_chance"] * chance  # a net that learned nothing has no gap
    numbers["dropout_learned"] = learned
    accuracy_curves(runs, folder, f"dropout: train−val gap {numbers['gap_none']:.3f} → {numbers['gap_dropout']:.3f}")
    return numbers, learned and numbers["gap_dropout"] < numbers["gap_none"] - t["narrower_by"]


def measure_augmentation(folder: Path, overrides):
    """val accuracy, augment=none vs [flip,crop]."""
    runs = {name: job(folder / "sweep", augment=value) for name, value in (("none", "none"),
                                                                           ("flip+crop", "[flip,crop]"))}
    acc = {name: summary(run)["val_acc"] for name, run in runs.items()}
    gain = acc["flip+crop"] - acc["none"]
    accuracy_curves(runs, folder, f"augmentation: val accuracy {acc['none']:.3f} → {acc['flip+crop']:.3f}")
    return {"val_acc": acc, "gain": gain}, gain > CLAIMS["augmentation"].threshold["gain_min"]


REGULARIZERS = ("none", "cutout", "mixup", "cutmix", "label_smoothing")


def measure_regularizers(folder: Path, overrides):
    """val accuracy per regularizer; the best gain over none."""
    runs = {name: job(folder / "sweep", regularizer=name) for name in REGULARIZERS}
    acc = {name: summary(run).get("val_acc") for name, run in runs.items()}
    gains = {name: acc[name] - acc["none"] for name in REGULARIZERS[1:] if acc[name] is not None}
    best = max(gains, key=gains.get) if gains else None
    accuracy_curves(runs, folder, "regularizers: val accuracy on a small training set")
    numbers = {"val_acc": acc, "gain_over_none": gains, "best": best, "best_gain": gains.get(best)}
    return numbers, best is not None and gains[best] > CLAIMS["regularizers"].threshold["best_gain_min"]


def activation_names():
    from .config import CONFIG_DIR

    return sorted(p.stem for p in (CONFIG_DIR / "activation").glob("*.yaml"))


def measure_activations(folder: Path, overrides):
    """val accuracy of every activation on one model; sigmoid vs ReLU, GELU/ELU/SELU vs ReLU."""
    acc = {name: summary(job(folder / "sweep", activation=name)).get("val_acc") for name in activation_names()}
    t = CLAIMS["activations"].threshold
    status = {name: summary(job(folder / "sweep", activation=name)).get("status") for name in acc}
    relu = acc["relu"]
    # a run that diverged or failed has no accuracy: it counts as not within the margin (and sigmoid as trailing)
    close = {n: None if acc[n] is None or relu is None else acc[n] - relu for n in ("gelu", "elu", "selu")}
    holds = (relu is not None and (acc["sigmoid"] is None or acc["sigmoid"] < relu)
             and all(d is not None and d >= -t["margin"] for d in close.values()))
    order = sorted(acc, key=lambda n: acc[n] or 0)
    fig, axes = figure(1, 1, size=(7, 4))
    axes[0, 0].barh(order, [acc[n] or 0 for n in order], color=["tab:red" if n == "sigmoid" else "tab:blue"
                                                                   for n in order])
    if relu is not None:
        axes[0, 0].axvline(relu, color="grey", linestyle="--")
        axes[0, 0].axvline(relu - t["margin"], color="grey", linestyle=":")
    axes[0, 0].set(xlabel="val accuracy")
    save(fig, folder, "activations: one model, every activation (dashed: ReLU, dotted: ReLU − margin)")
    trails = None if acc["sigmoid"] is None or relu is None else acc["sigmoid"] - relu
    return {"val_acc": acc, "status": status, "sigmoid_minus_relu": trails, "minus_relu": close}, holds


# ---------------------------------------------------------------- the claims

def _claims():
    lab_mlp, lab_convnet = "experiment=lab_mlp", "experiment=lab_convnet"
    return [
        Claim("saturation", "Saturated neurons kill the gradients.",
              "per-layer weight-gradient norms of an 8-layer MLP at init, sigmoid vs tanh vs ReLU",
              {"first_layer_sigmoid_over_relu_max": 0.1},
              "σ'(x) ≤ 1/4 (lecture), so each sigmoid layer above the first shrinks the backward signal at least "
              "4× more than a ReLU's active slope 1; over 7 layers 'far smaller' is conservatively ≥ 10×",
              measure_saturation, in_process="deeprob_cli.lab.measure_saturation: " + " ".join(SATURATION_BASE)
              + " activation=sigmoid|tanh|relu, one batch of 256 training images, ∂L/∂W per layer",
              extra={"headline": ("first_layer_sigmoid_over_relu",)}),
        Claim("not_zero_centred", "Sigmoid outputs are not zero-centred: the gradients on all w_ij of a neuron "
              "have the same sign.",
              "share of one-sign rows of ∂L/∂W for a layer fed sigmoid vs tanh outputs, one example at a time",
              {"sigmoid_min": 0.99, "tanh_max": 0.01},
              "∂L/∂w_ij = δ_i·x_j: with every x_j > 0 each row has δ_i's sign (exactly 1); with zero-centred x a row "
              "of 256 entries shares one sign with probability ≈ 2^-255 (≈ 0)",
              measure_not_zero_centred, in_process="deeprob_cli.lab.measure_not_zero_centred: "
              + " ".join(SIGN_BASE) + " activation=sigmoid|tanh, fc2's gradient for 32 single examples",
              extra={"headline": ("sigmoid_one_sign_rows", "tanh_one_sign_rows")}),
        Claim("relu_speed", "ReLU converges much faster than sigmoid/tanh in practice (e.g. 6×).",
              "steps to reach tanh's final training loss, small CNN without normalization, ReLU vs tanh",
              {"speedup_min": 1.5},
              "Krizhevsky et al. 2012 (Fig. 1): ≈6× fewer epochs to 25% training error on CIFAR-10; a few epochs "
              "on a subset is far from their regime, so the reduced bound is a weaker, stated ≥ 1.5×",
              measure_relu_speed,
              runs=(("sweep", ("train", "-m", lab_convnet, "model.norm=none", "schedule=constant",
                               "activation=relu,tanh")),),
              extra={"headline": ("speedup",)}),
        Claim("dead_relu", "A dead ReLU will never activate, so it never updates (bad init or a too-high "
              "learning rate); leaky ReLU will not die.",
              "dead-unit fraction after training under a 20× learning rate or a −1 bias, ReLU vs leaky ReLU; "
              "the 0.01 positive-bias trick reported",
              {"relu_dead_min": 0.1, "leaky_dead_max": 0.0},
              "CS231n notes: with a too-high learning rate 'as much as 40% of your network can be dead'; a quarter "
              "of that (10%) must be dead under each bad condition; leaky ReLU's slope α > 0 never vanishes, so 0",
              measure_dead_relu,
              runs=(("lr", ("train", "-m", lab_mlp, "activation=relu,leaky_relu", "optim.lr=0.05,1.0")),
                    ("bias", ("train", "-m", lab_mlp, "activation=relu,leaky_relu", "init.bias=-1.0,0.01"))),
              extra={"headline": ("relu_large_lr", "relu_negative_bias", "leaky_max")}),
        Claim("init_depth", "Activation statistics through a deep net at init: small random numbers (0.01) "
              "shrink to zero, larger ones (0.05) saturate tanh, Xavier fits tanh, collapses with ReLU, "
              "Kaiming fits ReLU.",
              "deeprob init-stats: last-layer std and saturation of the lecture's 6-layer stack of 4096 units",
              {"shrink_last_std_max": 0.1, "saturate_last_min": 0.2, "xavier_tanh_last_std_min": 0.2,
               "xavier_tanh_saturated_max": 0.05, "collapse_ratio_max": 0.25, "kaiming_ratio": [0.5, 2.0]},
              "lecture slides; theory: std 0.01 multiplies the std by 0.01·√4096 = 0.64 per layer (0.64^6 ≈ 0.07); "
              "0.05 gives pre-activations of std ≈ 3, |tanh| > 0.99 for ≈ 35%; Xavier+ReLU halves the variance "
              "per layer ((1/√2)^5 ≈ 0.18 of the first layer's std); Kaiming keeps it (ratio 1)",
              measure_init_depth,
              runs=(("small", ("init-stats", "-m", "init=normal", "init.std=0.01,0.05", "activation=tanh")),
                    ("scaled", ("init-stats", "-m", "init=xavier,kaiming", "activation=tanh,relu"))),
              extra={"headline": ("checks",)}),
        Claim("zero_init", "Initializing all weights to 0: every neuron computes the same output and gets the "
              "same gradient — no symmetry breaking.",
              "largest difference between the units (rows) of each hidden layer after training, zeros vs kaiming",
              {"zeros_spread_max": 1e-5, "kaiming_spread_min": 0.1},
              "identical units stay identical up to float rounding (relative 1e-5); random init leaves units "
              "O(1) apart relative to the largest weight",
              measure_zero_init,
              runs=(("sweep", ("train", "-m", lab_mlp, "model.depth=2", "model.width=64", "activation=sigmoid",
                               "trainer.epochs=1", "init=zeros,kaiming")),),
              extra={"headline": ("zeros_max_spread", "kaiming_min_spread")}),
        Claim("normalization", "Before normalization the classification loss is very sensitive to changes in the "
              "weights; after normalization less sensitive, easier to optimize.",
              "mean |Δ val loss| of a trained linear classifier under the same relative random weight "
              "perturbation, raw [0,1] pixels vs standardized",
              {"epsilon": 0.05, "draws": 10, "ratio_min": 1.5},
              "a perturbation of relative size ε moves the logits by ≈ ε‖W‖‖x‖; raw CIFAR pixels sit at mean ≈ 0.47 "
              "with std ≈ 0.25, so ‖x‖ relative to the spread the classifier must resolve is √(1+(μ/σ)²) ≈ 2 times "
              "the standardized one; bound ≥ 1.5×",
              measure_normalization,
              runs=(("sweep", ("train", "-m", lab_mlp, "model.depth=0", "preprocess=none,standardize")),),
              extra={"headline": ("raw_over_standardized",)}),
        Claim("residual_init", "Var(F(x)+x) > Var(x): with Kaiming init the variance grows with each residual "
              "block; initialize the last layer of each branch to zero so every block starts as the identity.",
              "variance of each block's output of a ResNet-56 at init, with and without init.zero_residual",
              {"growth_min": 2.0, "zero_residual_tolerance": 0.01},
              "Var(F+x) = Var(F)+Var(x) for independent F, so stage 1's 9 blocks add ≥ one Var(x)-sized term each "
              "(≥ 2× is conservative); with F = 0 a block is relu(x) = x for x ≥ 0: exactly 1 (1% tolerance)",
              measure_residual_init, in_process="deeprob_cli.lab.measure_residual_init: " + " ".join(RESNET_BASE)
              + " init.zero_residual=false|true, Var of the stem and every block on 64 training images",
              extra={"headline": ("stage1_growth", "stage1_growth_zero_residual")}),
        Claim("dropout", "Dropout is a regularizer: it narrows the gap between training and validation accuracy.",
              "train accuracy (eval mode) minus val accuracy on 1000 training images, regularizer=none vs dropout",
              {"narrower_by": 0.0, "learned_over_chance": 1.5},
              "the lecture states the direction (less overfitting), not a size: any narrower gap holds, provided "
              "the dropout run learned (val accuracy ≥ 1.5× chance; a net stuck at chance has no gap at all)",
              measure_dropout,
              runs=(("sweep", ("train", "-m", lab_mlp, "model.width=512", "dataset.subset=1000", "optim.lr=0.01",
                               "trainer.epochs=15", "regularizer=none,dropout")),),
              extra={"headline": ("gap_none", "gap_dropout")}),
        Claim("augmentation", "Data augmentation (flips, crops) improves generalization on a small training set.",
              "val accuracy, augment=none vs [flip,crop], small convnet on 2000 images",
              {"gain_min": 0.0},
              "the lecture states the direction, not a size: any val-accuracy gain holds",
              measure_augmentation,
              runs=(("sweep", ("train", "-m", lab_convnet, "trainer.epochs=5", "augment=none,[flip,crop]")),),
              extra={"headline": ("gain",)}),
        Claim("regularizers", "Cutout, mixup, cutmix and label smoothing regularize a small-data model "
              "(no fixed winner).",
              "val accuracy of regularizer=none|cutout|mixup|cutmix|label_smoothing, small convnet",
              {"best_gain_min": 0.0},
              "no winner is claimed; the claim is that at least one of them beats no regularization",
              measure_regularizers,
              runs=(("sweep", ("train", "-m", lab_convnet, "regularizer=" + ",".join(REGULARIZERS))),),
              extra={"headline": ("best", "best_gain")}),
        Claim("activations", "In practice: use ReLU; try GELU/ELU/SELU (similar); don't use sigmoid.",
              "val accuracy of every activation on one MLP: sigmoid below ReLU, GELU/ELU/SELU within a margin",
              {"margin": 0.03},
              "the lecture ranks them without sizes; 0.03 is about twice the standard error of an accuracy "
              "on 1000 validation images (√(0.4·0.6/1000) ≈ 0.015)",
              measure_activations,
              runs=(("sweep", ("train", "-m", lab_mlp, "optim.lr=0.01", "activation=" + ",".join(activation_names()))),),
              extra={"headline": ("sigmoid_minus_relu", "minus_relu")}),
    ]


CLAIMS = {c.name: c for c in _claims()}


# ---------------------------------------------------------------- the report

def render_report(verdicts: list, root: Path, command: str) -> str:
    """REPORT.md: a summary table, then per claim its statement, commands, figure, numbers and verdict."""
    lines = ["# The lecture's claims, reproduced", "", f"`{command}`", "",
             "| claim | holds | numbers | threshold |", "|---|---|---|---|"]
    for v in verdicts:
        holds = "error" if v.get("error") else "yes" if v["holds"] else "**no**"
        lines.append(f"| [{v['claim']}](#{v['claim']}) | {holds} | {headline(v)} | "
                     f"{_inline(v['threshold'])} |")
    for v in verdicts:
        folder = Path(v["folder"])
        lines += ["", f"## {v['claim']}", "", f"> {v['statement']}", "",
                  f"**{'holds' if v['holds'] else 'does not hold'}**"
                  + (f" — error: {v['error']}" if v.get("error") else "")
                  + f" ({v.get('seconds', 0):.0f} s). Threshold {_inline(v['threshold'])}: {v['justification']}.",
                  "", "```", *v["commands"], "```", ""]
        if (folder / v["figure"]).is_file():
            lines += [f"![{v['claim']}]({_relative(folder / v['figure'], root)})", ""]
        lines += ["```json", json.dumps(v["numbers"], indent=1, default=str), "```"]
    return "\n".join(lines) + "\n"


def _inline(value) -> str:
    return json.dumps(value, default=str).replace("|", "\\|")


def _relative(path: Path, root: Path) -> str:
    import os

    return os.path.relpath(path.resolve(), root.resolve())


# ---------------------------------------------------------------- command line

def parse(args):
    """(claims, overrides, out, report, list) from deeprob lab's arguments."""
    claims, overrides, out, report, listing, everything = [], [], None, None, False, False
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        if arg == "--list":
            listing = True
        elif arg == "--all":
            everything = True
        elif arg == "--report":
            if not rest:
                raise UserError("--report: expected a file, e.g. --report runs/lecture/REPORT.md")
            report = Path(rest.pop(0))
        elif arg.startswith("out="):
            out = Path(arg.split("=", 1)[1])
        elif "=" in arg or arg.startswith("+") or arg.startswith("~"):
            overrides.append(arg)
        elif arg.startswith("-"):
            raise UserError(f"unknown option {arg!r}; {USAGE}")
        elif arg not in CLAIMS:
            raise UserError(f"claim: {arg!r} is not one of {', '.join(CLAIMS)} (deeprob lab --list)")
        else:
            claims.append(arg)
    if everything:
        claims = list(CLAIMS)
    if not claims and not listing and report is None:
        raise UserError(f"name a claim or --all; {USAGE}")
    return claims, overrides, out, report, listing


def main(args=None):
    args = sys.argv[1:] if args is None else args
    if args and args[0] in ("-h", "--help"):
        print(USAGE + "\n\n" + __doc__)
        return 0
    try:
        claims, overrides, out, report, listing = parse(args)
        if listing:
            width = max(map(len, CLAIMS))
            for c in CLAIMS.values():
                print(f"{c.name:<{width}}  {c.measurement}")
            return 0
        stamp = datetime.now().strftime("%Y-%m-%d/%H-%M-%S")
        if out is None:
            out = Path("runs/lab") / (claims[0] if len(claims) == 1 else "all") / stamp
        folders = {c: out if len(claims) == 1 else out / c for c in claims}
        verdicts = []
        for name in claims:
            try:
                verdicts.append({**run_claim(CLAIMS[name], overrides, folders[name]), "folder": str(folders[name])})
            except Exception as e:
                if len(claims) == 1:
                    raise
                e = e if isinstance(e, UserError) else f"{type(e).__name__}: {e}"
                print(f"deeprob lab: error: {name}: {e}", file=sys.stderr)  # the other claims go on
                claim = CLAIMS[name]
                verdicts.append({"claim": name, "statement": claim.statement, "holds": False, "numbers": {},
                                 "threshold": claim.threshold, "justification": claim.justification,
                                 "commands": [], "figure": "figure.png", "error": str(e),
                                 "folder": str(folders[name])})
        if not claims and report:  # re-render a report from the verdicts already in its folder
            found = [json.loads((report.parent / c / "verdict.json").read_text()) | {"folder": str(report.parent / c)}
                     for c in CLAIMS if (report.parent / c / "verdict.json").is_file()]
            if not found:
                raise UserError(f"--report: no <claim>/verdict.json next to {report}; run deeprob lab --all first")
            command = shlex.join(["deeprob", "lab", "--all", *found[0].get("overrides", [])]) + "  (re-rendered)"
            report.write_text(render_report(found, report.parent, command))
            print(f"report: {report} ({len(found)} claims)")
            return 0
        if len(claims) > 1 or report:
            report = report or out / "REPORT.md"
            report.parent.mkdir(parents=True, exist_ok=True)
            command = shlex.join(["deeprob", "lab", *args])
            report.write_text(render_report(verdicts, report.parent, command))
            print(f"report: {report}")
            table = [f"{v['claim']:<17} {'error' if v.get('error') else 'holds' if v['holds'] else 'NO':<6} "
                     f"{headline(v) if not v.get('error') else v['error']}" for v in verdicts]
            print("\n".join(table))
        return 1 if any(v.get("error") for v in verdicts) else 0
    except UserError as e:
        print(f"deeprob lab: error: {e}", file=sys.stderr)
        return 2
