"""Weight initialization (conf/init/). Try: deeprob train dataset=synthetic init=xavier, or deeprob init-stats init=lsuv

Every option is a function `scheme(model, *, activation, batch, **params)` that re-initializes the weights of
every Linear and Conv layer in place. `activation` is one instance of the chosen activation (Kaiming's gain
follows it); `batch` is one preprocessed training batch (for data-dependent schemes). Two settings cut across
every option: `bias` (a constant for every Linear/Conv bias; null keeps the layer's own) and `zero_residual`
(zero the last layer of each residual branch, so every residual block starts as F(x) = 0).
"""
import functools
import inspect
import math

import torch
from torch import nn

from .. import UserError
from ..models import BasicBlock

LAYER_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def layers(model: nn.Module):
    """The layers whose weights an init scheme sets: every Linear and Conv."""
    return [m for m in model.modules() if isinstance(m, LAYER_TYPES)]


def fan_in(layer: nn.Module) -> int:
    """Inputs feeding one output unit: in_features, or in_channels/groups × kernel area for a conv."""
    return layer.weight[0].numel()


def fan_out(layer: nn.Module) -> int:
    """Outputs fed by one input unit: out_features, or out_channels × kernel area / groups for a conv."""
    w = layer.weight
    return w.shape[0] * w[0][0].numel()


def gain(activation: nn.Module) -> float:
    """The gain that keeps Var(output) = Var(input) through the activation (torch.nn.init.calculate_gain)."""
    own = getattr(activation, "init_gain", None)  # deeprob's own activations state theirs
    if own is not None:
        return float(own)
    if isinstance(activation, (nn.LeakyReLU, nn.PReLU)):  # √(2/(1+α²))
        slope = activation.negative_slope if isinstance(activation, nn.LeakyReLU) else activation.weight.detach().mean().item()
        return nn.init.calculate_gain("leaky_relu", slope)
    if isinstance(activation, nn.SELU):
        return 1.0  # self-normalizing nets use LeCun's init: Var(W) = 1/fan_in (Klambauer et al. 2017)
    for kind, name in ((nn.ReLU, "relu"), (nn.Tanh, "tanh"), (nn.Sigmoid, "sigmoid"), (nn.Identity, "linear")):
        if isinstance(activation, kind):
            return nn.init.calculate_gain(name)
    return math.sqrt(2.0)  # ReLU-like (GELU, SiLU, ELU): the He gain is the usual choice


# ---------------------------------------------------------------- parameter checks and the cross-cutting settings

def _allowed(default) -> tuple[type, ...]:
    """The types a parameter accepts, read from its default (None: a number or null)."""
    if isinstance(default, bool):
        return (bool,)
    if isinstance(default, float) or default is None:
        return (int, float, type(None)) if default is None else (int, float)
    return (type(default),)


def scheme(fn):
    """Make fn an init option: unknown or mistyped parameters raise UserError before any weight changes."""
    defaults = {name: p.default for name, p in inspect.signature(fn).parameters.items()
                if p.kind is p.KEYWORD_ONLY and name not in ("activation", "batch")}

    @functools.wraps(fn)
    def checked(model, *, activation=None, batch=None, **params):
        for key, value in params.items():
            if key not in defaults:
                raise UserError(f"init.{key}: not a parameter of init={fn.__name__}; "
                                f"allowed: {', '.join(defaults)}")
            types = _allowed(defaults[key])
            if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
                names = " or ".join("null" if t is type(None) else t.__name__ for t in types)
                raise UserError(f"init.{key}: {value!r} is not allowed; expected {names}")
        return fn(model, activation=activation, batch=batch, **params)

    return checked


def _one_of(key: str, value, allowed):
    if value not in allowed:
        raise UserError(f"init.{key}: {value!r} is not one of {', '.join(allowed)}")


def _set_bias(model, bias):
    if bias is None:
        return
    for layer in layers(model):
        if layer.bias is not None:
            nn.init.constant_(layer.bias, bias)


def _zero_residual(model):
    """Zero the last layer of every residual branch: norm2's scale, or conv2 (and its bias) without norm."""
    blocks = [m for m in model.modules() if isinstance(m, BasicBlock)]
    if not blocks:
        raise UserError(f"init.zero_residual: true needs a model with residual blocks (model=resnet), "
                        f"not {type(model).__name__}; use init.zero_residual=false")
    for block in blocks:
        last = block.norm2 if isinstance(block.norm2, nn.modules.batchnorm._NormBase) else block.conv2
        nn.init.zeros_(last.weight)
        if last.bias is not None:
            nn.init.zeros_(last.bias)  # BN's β starts at 0 anyway; a conv's bias would leave F(x) = b


def _finish(model, bias, zero_residual):
    _set_bias(model, bias)
    if zero_residual:
        _zero_residual(model)


def _scaled(fill, layer, g: float):
    """One of torch.nn.init's fills at gain 1 ('linear'), then times g."""
    fill(layer.weight)
    layer.weight.mul_(g)


# ---------------------------------------------------------------- the options

@scheme
@torch.no_grad()
def default(model, *, activation=None, batch=None, bias=None, zero_residual=False):
    """Keep PyTorch's layer defaults."""
    _finish(model, bias, zero_residual)


@scheme
@torch.no_grad()
def zeros(model, *, activation=None, batch=None, bias=0.0, zero_residual=False):
    """W = 0: every unit of a layer computes the same thing and gets the same gradient (no symmetry breaking)."""
    for layer in layers(model):
        nn.init.zeros_(layer.weight)
    _finish(model, bias, zero_residual)


@scheme
@torch.no_grad()
def normal(model, *, activation=None, batch=None, std=0.01, bias=0.0, zero_residual=False):
    """W ~ N(0, std²): the lecture's "small random numbers", whatever the layer's size."""
    if std < 0:
        raise UserError(f"init.std: {std!r} is not allowed; expected a number ≥ 0")
    for layer in layers(model):
        nn.init.normal_(layer.weight, 0.0, std)
    _finish(model, bias, zero_residual)


@scheme
@torch.no_grad()
def xavier(model, *, activation=None, batch=None, distribution="normal", glorot=False, bias=0.0,
           zero_residual=False):
    """Var(W) = 1/fan_in (the lecture's std = 1/√Din), or Glorot & Bengio's 2/(fan_in+fan_out) with glorot=true."""
    _one_of("distribution", distribution, ("normal", "uniform"))
    for layer in layers(model):
        if glorot:
            (nn.init.xavier_normal_ if distribution == "normal" else nn.init.xavier_uniform_)(layer.weight)
        else:  # Kaiming's fill with the 'linear' gain 1 is exactly std = 1/√fan_in
            (nn.init.kaiming_normal_ if distribution == "normal" else nn.init.kaiming_uniform_)(
                layer.weight, mode="fan_in", nonlinearity="linear")
    _finish(model, bias, zero_residual)


@scheme
@torch.no_grad()
def kaiming(model, *, activation=None, batch=None, mode="fan_in", distribution="normal", bias=0.0,
            zero_residual=False):
    """Var(W) = gain²/fan (He et al. 2015), the gain matched to the activation (relu: std = √(2/Din)).

    The lecture's slide code keeps `/np.sqrt(Din)` (i.e. Xavier); the formula std = √(2/Din) is what is meant,
    and is what is implemented here.
    """
    _one_of("mode", mode, ("fan_in", "fan_out"))
    _one_of("distribution", distribution, ("normal", "uniform"))
    g = gain(activation) if activation is not None else math.sqrt(2.0)
    fill = nn.init.kaiming_normal_ if distribution == "normal" else nn.init.kaiming_uniform_
    for layer in layers(model):
        _scaled(functools.partial(fill, mode=mode, nonlinearity="linear"), layer, g)
    _finish(model, bias, zero_residual)


@scheme
@torch.no_grad()
def orthogonal(model, *, activation=None, batch=None, bias=0.0, zero_residual=False):
    """W = gain × an orthogonal matrix (Saxe et al. 2014); a conv's weight is orthogonal as (out, in·k·k)."""
    g = gain(activation) if activation is not None else 1.0
    for layer in layers(model):
        nn.init.orthogonal_(layer.weight, gain=g)
    _finish(model, bias, zero_residual)


class _Captured(Exception):
    """Stops a forward pass once the layer being tuned has produced its output."""


@scheme
@torch.no_grad()
def lsuv(model, *, activation=None, batch=None, tol=0.02, max_iter=10, bias=0.0, zero_residual=False):
    """Layer-sequential unit variance (Mishkin & Matas 2016): orthonormal start, then, layer by layer in forward
    order, W ← W/√Var(output) on `batch` until |Var(output) − 1| < tol or max_iter rescalings."""
    if batch is None:
        raise UserError("init=lsuv: needs a batch of training data; it is data-dependent")
    if not tol > 0:
        raise UserError(f"init.tol: {tol!r} is not allowed; expected a number > 0")
    if max_iter < 1:
        raise UserError(f"init.max_iter: {max_iter!r} is not allowed; expected an integer ≥ 1")
    for layer in layers(model):
        nn.init.orthogonal_(layer.weight)
    _set_bias(model, bias)
    # batch norm normalizes with batch statistics (as in training) but must not keep what it saw here
    buffers, was_training = {k: v.clone() for k, v in model.named_buffers()}, model.training
    model.train()
    for layer in layers(model):
        for _ in range(max_iter):
            var = _output_var(model, layer, batch)
            if var is None or abs(var - 1.0) < tol or var < 1e-12:  # unreached, done, or a zero output
                break
            layer.weight.div_(math.sqrt(var))
    for name, value in model.named_buffers():
        value.copy_(buffers[name])
    model.train(was_training)
    _finish(model, None, zero_residual)


def _output_var(model, layer, batch):
    """Var of layer's output when model runs on batch (the rest of the forward pass is skipped)."""
    seen = []

    def capture(module, inputs, output):
        seen.append(output.float().var().item())
        raise _Captured

    handle = layer.register_forward_hook(capture)
    try:
        model(batch)
    except _Captured:
        pass
    finally:
        handle.remove()
    return seen[0] if seen else None
