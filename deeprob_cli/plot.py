"""`deeprob plot activations [out=FILE.png]`: every option of conf/activation/ and its derivative on one sheet.

Each panel draws f(x) and f'(x) (autograd, float64) over the lecture's range. Run inside a training run's folder
(one holding .hydra/), the run's own activation is drawn with the run's parameters and marked, and the same
figure is logged to the run's TensorBoard (tag `activations`). A gated unit (SwiGLU) is drawn with its linear
half fixed at 1, i.e. as its swish gate.
"""
import sys
from pathlib import Path

from .trust import require_cwd

require_cwd("plot")  # before torch: its import fails natively in a deleted folder

import matplotlib  # noqa: E402

matplotlib.use("Agg")  # files only, never a window

import torch  # noqa: E402
from hydra.utils import instantiate  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from . import UserError  # noqa: E402
from .config import CONFIG_DIR  # noqa: E402
from .exits import guarded  # noqa: E402

USAGE = "usage: deeprob plot activations [out=FILE.png]"
X_RANGE = (-6.0, 6.0)
POINTS = 1201
ORDER = ("sigmoid", "tanh", "relu", "leaky_relu", "prelu", "elu", "selu", "gelu", "swish", "swiglu")  # the lecture's


def curves(module: torch.nn.Module, x: torch.Tensor):
    """(f(x), f'(x)) of an activation module on the 1-D grid x; a gated unit's linear half is held at 1."""
    module = module.double()
    x = x.detach().double().requires_grad_()
    column = x[:, None]
    if getattr(module, "in_factor", 1) == 2:
        column = torch.cat([column, torch.ones_like(column)], dim=1)
    y = module(column)[:, 0]
    (dy,) = torch.autograd.grad(y.sum(), x)
    return y.detach(), dy


def options(run_dir: Path = None) -> dict:
    """{name: activation config} for every conf/activation/ option; a run's own choice with the run's values once
    they name deeprob's own option (trust.trusted_option: a run folder is data, never code)."""
    from .trust import trusted_option

    paths = sorted((CONFIG_DIR / "activation").glob("*.yaml"),
                   key=lambda p: (ORDER.index(p.stem) if p.stem in ORDER else len(ORDER), p.stem))
    found = {p.stem: OmegaConf.load(p) for p in paths}
    if run_dir is not None:
        record = run_dir / ".hydra"
        try:
            chosen = OmegaConf.select(OmegaConf.load(record / "hydra.yaml"), "hydra.runtime.choices.activation")
            config = OmegaConf.to_container(OmegaConf.load(record / "config.yaml"), resolve=False)
        except FileNotFoundError:
            return found  # not a training run's record (empty .hydra/): the sheet without a run's choice
        except Exception as e:
            reason = getattr(e, "strerror", None) or (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise UserError(f"plot activations: the current folder's run record {record} cannot be read ({reason}); "
                            f"run it in a readable run folder or elsewhere") from None
        if chosen in found and isinstance(config, dict) and "activation" in config:
            node = OmegaConf.create(trusted_option("activation", config["activation"], str(record / "config.yaml")))
            found = {(f"{k} (this run's config)" if k == chosen else k): (node if k == chosen else v)
                     for k, v in found.items()}
    return found


SYMBOLS = {"alpha": "α", "beta": "β"}
# constants of options that have no parameters in their YAML (Klambauer et al. 2017, eq. 14)
FIXED = {"torch.nn.SELU": "α≈1.673, λ≈1.051 (fixed)"}


def parameters(node) -> str:
    """The option's parameter values for a panel title: 'α=0.1', 'β=1 learnable', 'approximate=tanh'."""
    if node.get("_target_") in FIXED:
        return FIXED[node["_target_"]]
    parts = []
    for key, value in node.items():
        if key.startswith("_"):
            continue
        if isinstance(value, bool):
            parts += [key.replace("_", " ")] if value else []
        elif isinstance(value, (int, float)):
            parts.append(f"{SYMBOLS.get(key, key)}={value:g}")
        else:
            parts.append(f"{key}={value}")
    return ", ".join(parts)


def align_zero(ax, twin):
    """Limits of both y axes widened so that y = 0 sits at the same height on both (one shared zero line)."""
    limits = [list(a.get_ylim()) for a in (ax, twin)]
    for lim in limits:  # each range must contain 0
        lim[0], lim[1] = min(lim[0], 0.0), max(lim[1], 0.0)
    share = max(-lo / (hi - lo) for lo, hi in limits)  # the zero's height as a share of the axis
    for a, (lo, hi) in zip((ax, twin), limits):
        if share < 1:
            lo = min(lo, -share / (1 - share) * hi)
        a.set_ylim(lo, hi)


def draw(configs: dict) -> Figure:
    """One sheet: a panel per activation, f on the left axis (solid) and f' on the right axis (dashed). f' has one
    range on every panel, so sigmoid's peak of 1/4 stands a quarter as tall as tanh's 1 (the lecture's point about
    vanishing gradients); y = 0 is at one height on every axis."""
    x = torch.linspace(*X_RANGE, POINTS, dtype=torch.float64)
    cols = 5
    rows = -(-len(configs) // cols)
    fig = Figure(figsize=(3.4 * cols, 2.9 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False, sharex=True)
    modules = {name: instantiate(node, _partial_=False) for name, node in configs.items()}
    drawn = {name: curves(module, x) for name, module in modules.items()}
    d_lo = min(0.0, *(float(dy.min()) for _, dy in drawn.values()))
    d_hi = max(float(dy.max()) for _, dy in drawn.values())
    pad = 0.08 * (d_hi - d_lo)
    d_lo, d_hi = d_lo - pad if d_lo < 0 else d_lo, d_hi + pad
    f_limits = {}
    for name, (y, _) in drawn.items():
        pad = 0.08 * max(float(y.max() - y.min()), 1e-3)
        f_limits[name] = (min(0.0, float(y.min()) - pad), max(0.0, float(y.max()) + pad))
    # the zero's height as a share of every axis: the largest any panel's f or the shared f' range needs
    share = max(-d_lo / (d_hi - d_lo), *(-lo / (hi - lo) for lo, hi in f_limits.values()))
    for ax, (name, node) in zip(axes.flat, configs.items()):
        module, (y, dy) = modules[name], drawn[name]
        twin = ax.twinx()
        ax.plot(x, y, color="tab:blue", label="f(x) (left axis)")
        twin.plot(x, dy, color="tab:red", linestyle="--", label="f'(x) (right axis, one range on every panel)")
        twin.set_ylim(min(d_lo, -share / (1 - share) * d_hi), d_hi)
        f_lo, f_hi = f_limits[name]
        ax.set_ylim(min(f_lo, -share / (1 - share) * f_hi), f_hi)
        ax.axhline(0, color="grey", linewidth=0.5)
        ax.axvline(0, color="grey", linewidth=0.5)
        ax.tick_params(axis="y", colors="tab:blue", labelsize=8)
        twin.tick_params(axis="y", colors="tab:red", labelsize=8)
        gated = "linear half = 1" if getattr(module, "in_factor", 1) == 2 else ""
        details = ", ".join(p for p in (parameters(node), gated) if p)
        ax.set_title(name + (f"\n{details}" if details else "\n "), fontsize=10,
                     fontweight="bold" if "this run" in name else "normal")
        ax.grid(alpha=0.3)
        handles = ax.get_lines()[:1] + twin.get_lines()[:1]
    for ax in list(axes.flat)[len(configs):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("x")
    fig.legend(handles=handles, loc="outside lower center", ncols=2, frameon=False)
    fig.suptitle(f"activations f (blue, left axis) and their derivatives f' (red, right axis) on "
                 f"[{X_RANGE[0]:g}, {X_RANGE[1]:g}]")
    return fig


def plot_activations(args) -> Path:
    """Draw the sheet, save it, and log it to the run's TensorBoard when the current folder is a run."""
    out = Path("activations.png")
    for arg in args:
        key, _, value = arg.partition("=")
        if key != "out" or not value:
            raise UserError(f"plot activations: unknown argument {arg!r}; {USAGE}")
        out = Path(value)
    if out.suffix.lower() not in (".png", ".pdf", ".svg"):
        raise UserError(f"out: {str(out)!r} is not allowed; expected a file name ending in .png, .pdf or .svg")
    try:
        cwd = Path.cwd()
    except FileNotFoundError:
        raise UserError("plot activations: the current folder no longer exists; cd into an existing folder") from None
    run_dir = cwd if (cwd / ".hydra").is_dir() else None
    fig = draw(options(run_dir))
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=120)
    except OSError as e:
        raise UserError(f"out: cannot write {out} ({e.strerror or e}); choose a file in a folder you can write to, "
                        f"e.g. out=/tmp/activations.png") from None
    print(f"wrote {out}")
    if run_dir is not None:
        from torch.utils.tensorboard import SummaryWriter

        from .trust import check_entries

        try:
            check_entries(run_dir)
            with SummaryWriter(str(run_dir)) as writer:
                writer.add_figure("activations", fig, close=False)
        except (OSError, UserError) as e:
            print(f"deeprob plot: not logged to TensorBoard in {run_dir} ({getattr(e, 'strerror', None) or e})",
                  file=sys.stderr)
            return out
        print(f"logged to TensorBoard in {run_dir} (tag activations)")
    return out


def main(args=None):
    """`deeprob plot`: exit 0 with the sheet written, else one line and the code of exits.EXITS."""
    guarded("plot", run_plot, sys.argv[1:] if args is None else args)
    return 0


def run_plot(args):
    if not args or args[0] != "activations":
        raise UserError(f"plot: the first argument must be what to plot (activations); {USAGE}")
    return plot_activations(args[1:])
