"""Weight initialization (conf/init/). Try: deeprob train dataset=synthetic init=xavier, or deeprob init-stats init=lsuv

Every option is a function `scheme(model, *, activation, batch, **params)` that re-initializes the weights of
every Linear and Conv layer in place (fixup also sets the residual blocks' scalar biases and multipliers). `activation` is one instance of the chosen activation (Kaiming's gain
follows it); `batch` is one preprocessed training batch (for data-dependent schemes). Two settings cut across
every option: `bias` (a constant for every Linear/Conv bias; null keeps the layer's own) and `zero_residual`
(zero the last layer of each residual branch, so every residual block starts as F(x) = 0). With batch norm
that zeroes the branch's last BN scale γ (Goyal et al. 2017); at init this is the same function as zeroing conv2
(F = γ·BN(conv2(...)) + β with β = 0), but later γ and conv2 learn differently.
"""
import functools
import math
from typing import Annotated

import torch
from torch import nn

from ..models import BasicBlock
from ..validate import Choice, Range

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
    """The gain g that keeps the second moment through a layer: E[f(g·z)²] = 1 for z ~ N(0, 1).

    He et al.'s derivation (2015, eq. 10): with Var(W) = g²/fan_in and inputs of second moment 1, a layer's
    pre-activation is ≈ N(0, g²), so its output's second moment is E[f(g·z)²]; g solves that = 1 numerically
    (`second_moment_gain`) for every activation, learnable ones at their initial values: ReLU's √2 and leaky
    ReLU's √(2/(1+α²)) exactly, SELU's LeCun gain 1, and the smooth ReLUs (GELU, SiLU, ELU) their own (the YAML
    of init=kaiming lists them). Bounded activations (tanh, sigmoid) never reach a second moment of 1 and keep
    torch's calculate_gain; an activation class of ours may state its own `init_gain` (PReLU's closed form,
    SwiGLU's two-factor one).
    """
    own = getattr(activation, "init_gain", None)
    if own is not None:
        return float(own)
    if isinstance(activation, nn.PReLU):  # torch's own PReLU: the closed form at its initial α
        return nn.init.calculate_gain("leaky_relu", activation.weight.detach().mean().item())
    g = second_moment_gain(activation)
    if g is not None:
        return g
    for kind, name in ((nn.Tanh, "tanh"), (nn.Sigmoid, "sigmoid")):
        if isinstance(activation, kind):
            return nn.init.calculate_gain(name)
    return math.sqrt(2.0)  # an activation we cannot evaluate on a tensor: the He gain


_NORMAL = torch.linspace(-12.0, 12.0, 9601, dtype=torch.float64)
_WEIGHTS = torch.exp(-_NORMAL ** 2 / 2) / math.sqrt(2 * math.pi) * (_NORMAL[1] - _NORMAL[0])  # N(0, 1) quadrature


@torch.no_grad()
def second_moment(activation, g: float) -> float:
    """E[f(g·z)²] for z ~ N(0, 1), by quadrature on a fine grid (float64)."""
    return float((activation(g * _NORMAL).double() ** 2 * _WEIGHTS).sum())


def second_moment_gain(activation) -> float | None:
    """g with E[f(g·z)²] = 1 (bisection; the second moment grows with g), or None where no g reaches 1."""
    try:
        if second_moment(activation, 1e3) < 1:  # bounded (tanh, sigmoid): no gain reaches a second moment of 1
            return None
    except (RuntimeError, TypeError, ValueError):  # e.g. a lazily sized module that cannot run on a 1-D tensor
        return None
    low, high = 1e-3, 1e3
    for _ in range(80):
        mid = math.sqrt(low * high)  # geometric bisection: g spans decades
        low, high = (mid, high) if second_moment(activation, mid) < 1 else (low, mid)
    return math.sqrt(low * high)


# ---------------------------------------------------------------- parameters and the cross-cutting settings

# parameter declarations shared by the options (deeprob_cli.validate checks them before any weight changes)
Bias = Annotated[float | None, Range(nullable=True)]  # a constant for every Linear/Conv bias; None keeps the layer's
Mode = Annotated[str, Choice("fan_in", "fan_out")]
Distribution = Annotated[str, Choice("normal", "uniform")]


def scheme(fn):
    """Mark fn as an init option: `needs` tells config.check_fits what its settings need from the model."""
    fn.needs = _needs
    return fn


def _needs(node):
    """zero_residual=true needs residual blocks (config.check_fits's form: capability, what for, the fix)."""
    if node.get("zero_residual", False):
        return "residual", "zero_residual=true needs residual blocks", "use model=resnet, or init.zero_residual=false"
    return None


def _set_bias(model, bias):
    if bias is None:
        return
    for layer in layers(model):
        if layer.bias is not None:
            nn.init.constant_(layer.bias, bias)


def _zero_residual(model):
    """Zero the last layer of every residual branch: norm2's scale, or conv2 (and its bias) without norm."""
    blocks = [m for m in model.modules() if isinstance(m, BasicBlock)]
    assert blocks, "the option's `needs` refuses zero_residual=true for a model without residual blocks"
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
def default(model, *, activation=None, batch=None, bias: Bias = None, zero_residual: bool = False,
            dirac: bool = False):
    """Keep PyTorch's layer defaults; dirac=True then makes the first filters of each conv the identity."""
    if dirac:
        identity_start(model)
    _finish(model, bias, zero_residual)


@torch.no_grad()
def identity_start(model):
    """Each conv's first min(in, out) filters pass their input channel through unchanged (torch's dirac_: a 1 at
    the kernel centre of channel i in filter i), the other filters keep their init: the convs start close to the
    identity, as in Keller Jordan's airbench (after the "identity init" of Zagoruyko & Komodakis 2017, DiracNets)."""
    for conv in (m for m in model.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) and m.groups == 1):
        nn.init.dirac_(conv.weight[:min(conv.weight.shape[:2])])


@scheme
@torch.no_grad()
def zeros(model, *, activation=None, batch=None, bias: Bias = 0.0, zero_residual: bool = False):
    """W = 0: every unit of a layer computes the same thing and gets the same gradient (no symmetry breaking)."""
    for layer in layers(model):
        nn.init.zeros_(layer.weight)
    _finish(model, bias, zero_residual)


@scheme
@torch.no_grad()
def normal(model, *, activation=None, batch=None, std: Annotated[float, Range(0)] = 0.01, bias: Bias = 0.0,
           zero_residual: bool = False):
    """W ~ N(0, std²): the lecture's "small random numbers", whatever the layer's size."""
    for layer in layers(model):
        nn.init.normal_(layer.weight, 0.0, std)
    _finish(model, bias, zero_residual)


@scheme
@torch.no_grad()
def xavier(model, *, activation=None, batch=None, distribution: Distribution = "normal", glorot: bool = False,
           bias: Bias = 0.0, zero_residual: bool = False):
    """Var(W) = 1/fan_in (the lecture's std = 1/√Din), or Glorot & Bengio's 2/(fan_in+fan_out) with glorot=true."""
    for layer in layers(model):
        if glorot:
            (nn.init.xavier_normal_ if distribution == "normal" else nn.init.xavier_uniform_)(layer.weight)
        else:  # Kaiming's fill with the 'linear' gain 1 is exactly std = 1/√fan_in
            (nn.init.kaiming_normal_ if distribution == "normal" else nn.init.kaiming_uniform_)(
                layer.weight, mode="fan_in", nonlinearity="linear")
    _finish(model, bias, zero_residual)


@scheme
@torch.no_grad()
def kaiming(model, *, activation=None, batch=None, mode: Mode = "fan_in", distribution: Distribution = "normal",
            bias: Bias = 0.0, zero_residual: bool = False):
    """Var(W) = gain²/fan (He et al. 2015), the gain matched to the activation (relu: std = √(2/Din)).

    The lecture's slide code keeps `/np.sqrt(Din)` (i.e. Xavier); the formula std = √(2/Din) is what is meant,
    and is what is implemented here.
    """
    g = gain(activation) if activation is not None else math.sqrt(2.0)
    fill = nn.init.kaiming_normal_ if distribution == "normal" else nn.init.kaiming_uniform_
    for layer in layers(model):
        _scaled(functools.partial(fill, mode=mode, nonlinearity="linear"), layer, g)
    _finish(model, bias, zero_residual)


@scheme
@torch.no_grad()
def orthogonal(model, *, activation=None, batch=None, bias: Bias = 0.0, zero_residual: bool = False):
    """W = gain × an orthogonal matrix (Saxe et al. 2014); a conv's weight is orthogonal as (out, in·k·k)."""
    g = gain(activation) if activation is not None else 1.0
    for layer in layers(model):
        nn.init.orthogonal_(layer.weight, gain=g)
    _finish(model, bias, zero_residual)


class _Captured(Exception):
    """Stops a forward pass once the layer being tuned has produced its output."""


@scheme
@torch.no_grad()
def lsuv(model, *, activation=None, batch=None, tol: Annotated[float, Range(0, low_open=True)] = 0.02,
         max_iter: Annotated[int, Range(1, integer=True)] = 10, bias: Bias = 0.0, zero_residual: bool = False):
    """Layer-sequential unit variance (Mishkin & Matas 2016): orthonormal start, then, layer by layer in forward
    order, W ← W/√Var(output) on `batch` until |Var(output) − 1| < tol or max_iter rescalings."""
    assert batch is not None, "init=lsuv is data-dependent: every caller passes a batch of training data"
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


@scheme
@torch.no_grad()
def fixup(model, *, activation=None, batch=None, mode: Mode = "fan_in", bias: Bias = 0.0):
    """Fixup (Zhang et al. 2019, section 3) for a residual network without normalization: Kaiming everywhere,
    then each branch's first conv scaled by L^(−1/(2m−2)) (L blocks, m = 2 layers per branch), each branch's last
    conv and the classifier zero, the scalar biases 0 and multipliers 1."""
    blocks = [m for m in model.modules() if isinstance(m, BasicBlock)]
    assert blocks and all(b.fixup for b in blocks), "fixup.needs refuses a model without unnormalized residual blocks"
    g = gain(activation) if activation is not None else math.sqrt(2.0)
    for layer in layers(model):
        _scaled(functools.partial(nn.init.kaiming_normal_, mode=mode, nonlinearity="linear"), layer, g)
    _set_bias(model, bias)
    m = 2  # layers per residual branch (basic blocks)
    for block in blocks:
        block.conv1.weight.mul_(len(blocks) ** (-1 / (2 * m - 2)))
        nn.init.zeros_(block.conv2.weight)
        for name in ("bias1a", "bias1b", "bias2a", "bias2b"):
            nn.init.zeros_(getattr(block, name))
        nn.init.ones_(block.scale)
        if block.conv2.bias is not None:
            nn.init.zeros_(block.conv2.bias)  # the branch starts as F(x) = 0 exactly
    head = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)


# fixup has no zero_residual setting (it zeroes every branch by definition): its own need replaces scheme's
fixup.needs = lambda node: ("unnormalized_residual", "needs a residual model without normalization",
                            "use model=resnet model.norm=none, or init=kaiming otherwise")
