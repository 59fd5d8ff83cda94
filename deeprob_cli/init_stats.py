"""`deeprob init-stats [overrides]`: the lecture's activation statistics through a deep stack of fully connected
layers, right after initialization (no training).

    deeprob init-stats init=normal init.std=0.05 activation=tanh
    deeprob init-stats -m init=xavier,kaiming activation=relu

Builds Linear → activation layers of widths `init_stats.dims` with the chosen activation, initializes them with
the chosen `init=` option (the same functions that initialize the training models), feeds one batch of
unit-Gaussian inputs and prints each layer's mean, std, fraction saturated and fraction dead. Writes the same
numbers to stats.json, one histogram per layer to histograms.png (the lecture's figure) and one TensorBoard
histogram tag `activation/by_layer` stepped by layer into the run folder. Same seed, same numbers.
"""
import json
import sys
import time
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig
from torch import nn

from . import CONFIG_DIR, UserError
from .config import build, check_init_stats
from .exits import report
from .models import in_factor

# a slope below this is a flat tail: for tanh, 1 − y² < 1 − 0.99² ⇔ |y| > 0.99
FLAT = 1 - 0.99 ** 2


def build_stack(dims, activation) -> nn.Sequential:
    """Linear(dims[i] → dims[i+1]) → activation, for each consecutive pair of dims."""
    k = in_factor(activation)
    modules = []
    for d_in, d_out in zip(dims[:-1], dims[1:]):
        modules += [nn.Linear(d_in, d_out * k), activation()]
    return nn.Sequential(*modules)


def layer_outputs(stack: nn.Sequential, x: torch.Tensor):
    """[(pre-activation, activation output)] of every layer of the stack on x."""
    outputs, h = [], x
    for linear, act in zip(stack[0::2], stack[1::2]):
        pre = linear(h).detach()
        h = act(pre).detach()
        outputs.append((pre, h))
    return outputs


def layer_stats(act: nn.Module, pre: torch.Tensor, y: torch.Tensor) -> dict:
    """mean and std of y; saturated = share of outputs in a flat tail away from 0 (|tanh| > 0.99, ELU's −α, ...);
    dead = share of units whose slope is flat for every example of the batch (a ReLU never on, a tanh pinned)."""
    with torch.enable_grad():
        p = pre.clone().requires_grad_()
        (slope,) = torch.autograd.grad(act(p).sum(), p)
    flat = slope.abs() < FLAT
    if flat.shape != y.shape:  # a gated unit (input k times wider, in chunks): flat when all its inputs are
        flat = flat.unflatten(-1, (-1, y.shape[-1])).all(-2)
    return {"mean": y.mean().item(), "std": y.std(unbiased=False).item(),
            "saturated": (flat & (y != 0)).float().mean().item(), "dead": flat.all(0).float().mean().item()}


@hydra.main(config_path=str(CONFIG_DIR), config_name="init_stats", version_base="1.3")
def main(cfg: DictConfig):
    """`deeprob init-stats [overrides]`: one line and exit code 2 for a mistake (a sweep goes on)."""
    hydra_cfg = HydraConfig.get()
    try:
        return run(cfg, Path(hydra_cfg.runtime.output_dir))
    except UserError as e:
        code = report("init-stats", e)
        if hydra_cfg.mode != RunMode.MULTIRUN:
            sys.exit(code)


cli = main  # `deeprob init-stats`


def run(cfg: DictConfig, out: Path):
    """Initialize the stack, measure every layer on one Gaussian batch, print and save the statistics."""
    check_init_stats(cfg)
    if (out / "stats.json").exists():
        raise UserError(f"hydra.run.dir: {out} already holds init-stats results; choose another folder")
    started = time.perf_counter()
    stats, outputs = measure(cfg)
    title = describe(cfg)
    print(format_table(stats, title))
    (out / "stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    plot_histograms(outputs, stats, title, out / "histograms.png")
    log_histograms(outputs, out)
    print(f"({time.perf_counter() - started:.1f} s) stats.json, histograms.png and TensorBoard events in {out}")
    return None


def measure(cfg: DictConfig):
    """(statistics of every layer, every layer's activation output) for cfg's init, activation and init_stats."""
    dims, batch = list(cfg.init_stats.dims), cfg.init_stats.batch
    torch.manual_seed(cfg.trainer.seed)
    x = torch.randn(batch, dims[0])  # the measured batch: unit-Gaussian inputs
    fit = torch.randn(batch, dims[0])  # the batch a data-dependent scheme (lsuv) may look at
    activation = build(cfg.activation, "activation")
    stack = build_stack(dims, activation)
    build(cfg.init, "init")(stack, activation=activation(), batch=fit)
    with torch.no_grad():
        outputs = layer_outputs(stack, x)
    stats = [{"layer": i, **layer_stats(stack[2 * i - 1], pre, y)} for i, (pre, y) in enumerate(outputs, 1)]
    return stats, [y for _, y in outputs]


def describe(cfg: DictConfig) -> str:
    """One line naming the init option with its parameters, the activation and the stack."""
    def name(node):
        params = {k: v for k, v in node.items() if not k.startswith("_")}
        label = node._target_.rsplit(".", 1)[-1]
        return label + ("(" + ", ".join(f"{k}={v}" for k, v in params.items()) + ")" if params else "")

    dims, batch = list(cfg.init_stats.dims), cfg.init_stats.batch
    widths = f"{len(dims) - 1} layers of {dims[1]}" if len(set(dims[1:])) == 1 else f"widths {dims}"
    return f"init={name(cfg.init)}  activation={name(cfg.activation)}  {widths}, batch {batch}, seed {cfg.trainer.seed}"


def format_table(stats, title: str) -> str:
    lines = [title, f"{'layer':>5} {'mean':>10} {'std':>10} {'saturated':>10} {'dead':>8}"]
    lines += [f"{s['layer']:>5} {s['mean']:>10.5f} {s['std']:>10.5f} {s['saturated']:>10.4f} {s['dead']:>8.4f}"
              for s in stats]
    return "\n".join(lines)


def plot_histograms(outputs, stats, title: str, path: Path):
    """One histogram per layer on a shared x range, side by side (the lecture's figure); returns the figure.

    Exact zeros (a ReLU layer's negative half: ≈ 50 % of its outputs) are left out of the bars and their share is
    written in the panel: drawn as a bar, that spike at 0 flattens the distribution of the other half to nothing.
    A linear y scale is kept, so the bars still show the shape a lecture figure shows."""
    from matplotlib.figure import Figure

    values = [y.detach().flatten().double() for y in outputs]
    nonzero = [v[v != 0] for v in values]
    drawn = [v for v in nonzero if v.numel()]
    lo = min((v.min().item() for v in drawn), default=-1.0)
    hi = max((v.max().item() for v in drawn), default=1.0)
    if hi - lo < 1e-12:  # e.g. one constant value
        lo, hi = lo - 1, hi + 1
    fig = Figure(figsize=(2.5 * len(outputs), 3.0), layout="constrained")
    axes = fig.subplots(1, len(outputs), squeeze=False, sharex=True)[0]
    for ax, v, nz, s in zip(axes, values, nonzero, stats):
        ax.hist(nz.numpy(), bins=50, range=(lo, hi), color="tab:blue")
        ax.set_title(f"layer {s['layer']}\nmean {s['mean']:+.2f}   std {s['std']:.2f}", fontsize=9)
        zeros = 1 - nz.numel() / max(v.numel(), 1)
        if zeros > 0:
            ax.text(0.97, 0.95, f"{zeros:.0%} exactly 0\n(not drawn)", transform=ax.transAxes, ha="right",
                    va="top", fontsize=8, color="dimgrey")
        ax.tick_params(labelsize=7)
        ax.set_xlabel("output value", fontsize=8)
    axes[0].set_ylabel("count (outputs per bin)", fontsize=8)  # each panel its own count scale
    headline, details = _split_title(title)
    fig.suptitle(headline, fontsize=11)
    if details:
        fig.supxlabel(details, fontsize=8, color="dimgrey")
    fig.savefig(path, dpi=100)
    return fig


def _split_title(title: str):
    """('init=kaiming, activation=ReLU: 6 layers of 4096', 'init: mode=fan_in, ... · batch 16, seed 0') from
    describe()'s one line; the whole line as the headline when it has another shape."""
    import re

    match = re.fullmatch(r"init=(\w+)(?:\((.*)\))?  activation=(\w+)(?:\((.*?)\))?  (.*?)(, batch .*)?", title)
    if not match:
        return title, ""
    init, init_params, act, act_params, stack, rest = match.groups()
    details = [f"init: {init_params}" if init_params else "", f"activation: {act_params}" if act_params else "",
               (rest or "").lstrip(", ")]
    std = re.search(r"(?:^|, )(std=[^,]+)", init_params or "")  # the lecture's knob (init=normal): in the headline
    return (f"init={init}{' ' + std.group(1) if std else ''}, activation={act}: {stack}",
            "  ·  ".join(d for d in details if d))


def log_histograms(outputs, out: Path):
    """One TensorBoard histogram tag, activation/by_layer, whose step is the layer index (1 = first layer):
    the Histograms tab's offset view then stacks the layers like the lecture's figure."""
    from torch.utils.tensorboard import SummaryWriter
    from tensorboard.data_compat import migrate_value
    from torch.utils.tensorboard.summary import histogram

    writer = SummaryWriter(str(out))
    for i, y in enumerate(outputs, 1):
        summary = histogram("activation/by_layer", y.flatten().numpy(), bins=writer.default_bins)  # add_histogram's bins
        summary.value[0].metadata.summary_description = (  # the tag's description, shown beside its chart
            "Activation outputs of each layer of the stack right after initialization; step = layer index "
            "(1 = first layer). Offset view: how the distribution widens, collapses or saturates with depth.")
        summary.value[0].CopyFrom(migrate_value(summary.value[0]))  # the histogram plugin's own format: the fast
        writer.file_writer.add_summary(summary, i)  # loader drops a legacy histogram's description
    writer.close()
