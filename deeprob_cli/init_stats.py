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
import time
from pathlib import Path

import torch
from omegaconf import DictConfig, ListConfig
from torch import nn

from . import UserError
from .config import build
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


def check(node: DictConfig):
    """Raise UserError for an init_stats value out of range."""
    dims, batch = node.dims, node.batch
    ok = isinstance(dims, (list, ListConfig)) and len(dims) >= 2 and all(_is_int(d) and d > 0 for d in dims)
    if not ok:
        raise UserError(f"init_stats.dims: {dims!r} is not allowed; expected a list of ≥ 2 positive integers "
                        f"(input width, then each layer's width), e.g. init_stats.dims=[512,512,512]")
    if not (_is_int(batch) and batch > 0):
        raise UserError(f"init_stats.batch: {batch!r} is not allowed; expected a positive integer")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def run(cfg: DictConfig, out: Path):
    """Initialize the stack, measure every layer on one Gaussian batch, print and save the statistics."""
    if cfg.task != "init_stats":
        raise UserError(f"task: {cfg.task!r} is not one of train, init_stats")
    check(cfg.init_stats)
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
    """One histogram per layer on a shared x range, side by side (the lecture's figure)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lo = min(y.min().item() for y in outputs)
    hi = max(y.max().item() for y in outputs)
    if hi - lo < 1e-12:  # e.g. all zeros
        lo, hi = lo - 1, hi + 1
    fig, axes = plt.subplots(1, len(outputs), figsize=(2.4 * len(outputs), 2.6), squeeze=False)
    for ax, y, s in zip(axes[0], outputs, stats):
        ax.hist(y.flatten().numpy(), bins=50, range=(lo, hi), color="tab:blue")
        ax.set_title(f"layer {s['layer']}\nmean {s['mean']:+.2f}  std {s['std']:.2f}", fontsize=9)
        ax.tick_params(labelsize=7)
        ax.set_yticks([])
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def log_histograms(outputs, out: Path):
    """One TensorBoard histogram tag, activation/by_layer, whose step is the layer index (1 = first layer):
    the Histograms tab's offset view then stacks the layers like the lecture's figure."""
    from torch.utils.tensorboard import SummaryWriter
    from torch.utils.tensorboard.summary import histogram

    writer = SummaryWriter(str(out))
    for i, y in enumerate(outputs, 1):
        summary = histogram("activation/by_layer", y.flatten().numpy(), bins=writer.default_bins)  # add_histogram's bins
        summary.value[0].metadata.summary_description = (  # the tag's description, shown beside its chart
            "Activation outputs of each layer of the stack right after initialization; step = layer index "
            "(1 = first layer). Offset view: how the distribution widens, collapses or saturates with depth.")
        writer.file_writer.add_summary(summary, i)
    writer.close()
