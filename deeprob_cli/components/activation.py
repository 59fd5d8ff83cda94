"""Activation functions (conf/activation/).

    deeprob train dataset=synthetic activation=leaky_relu activation.alpha=0.2
    deeprob plot activations

Every option is a factory (`_partial_: true`) that the models call once per layer. Options that torch has
(sigmoid, tanh, relu, elu, selu) target torch.nn directly; this module holds what torch lacks: the
sigmoid-approximate GELU, the learnable-per-channel PReLU, swish with β, the gated SwiGLU unit, and thin
subclasses where torch's keyword differs from the lecture's (LeakyReLU's α).

The models honour `in_factor` (a gated unit takes twice the width it returns); init.gain() solves the gain of any
activation numerically and reads `init_gain` where a class of ours states a closed form (PReLU, whose α is sized
lazily) or one a single-input quadrature cannot give (SwiGLU's two factors).
"""
import math
from typing import Annotated

import torch
from torch import nn
from torch.nn.modules.lazy import LazyModuleMixin
from torch.nn.parameter import UninitializedParameter

from ..validate import Choice

SIGMOID_GELU_SCALE = 1.702  # x·σ(1.702x) ≈ x·Φ(x) (Hendrycks & Gimpel 2016, section 2; the lecture's form)


class LeakyReLU(nn.LeakyReLU):
    """max(αx, x): torch's LeakyReLU with the lecture's name α for its slope."""

    def __init__(self, alpha: float = 0.1):
        super().__init__(negative_slope=float(alpha))


class GELU(nn.GELU):
    """x·Φ(x); approximate=tanh is torch's tanh form, approximate=sigmoid the lecture's x·σ(1.702x)."""

    def __init__(self, approximate: Annotated[str, Choice("none", "tanh", "sigmoid")] = "none"):
        super().__init__(approximate=approximate)

    def forward(self, x):
        if self.approximate == "sigmoid":
            return x * torch.sigmoid(SIGMOID_GELU_SCALE * x)
        return super().forward(x)


class PReLU(LazyModuleMixin, nn.Module):
    """max(αx, x) with α learned (He et al. 2015): one α per channel (dim 1), or one shared by the layer.

    The channel count is learned from the first forward pass (like torch's LazyLinear); the module then
    becomes a plain torch.nn.PReLU. `materialize(model, batch)` runs that pass before the optimizer is built.
    """

    cls_to_become = nn.PReLU

    def __init__(self, alpha: float = 0.25, per_channel: bool = True):
        super().__init__()
        self.init, self.per_channel = float(alpha), per_channel
        self.init_gain = math.sqrt(2.0 / (1.0 + self.init ** 2))  # Kaiming's leaky-ReLU gain at the initial α
        if per_channel:
            self.num_parameters, self.weight = 0, UninitializedParameter()
        else:
            self.num_parameters, self.weight = 1, nn.Parameter(torch.full((1,), self.init))

    def initialize_parameters(self, x):
        if self.has_uninitialized_params():
            self.num_parameters = x.shape[1] if x.dim() > 1 else 1
            with torch.no_grad():
                self.weight.materialize((self.num_parameters,), dtype=x.dtype, device=x.device)
                self.weight.fill_(self.init)

    def forward(self, x):  # only until the first pass is done; then nn.PReLU.forward
        return nn.functional.prelu(x, self.weight)


class Swish(nn.Module):
    """x·σ(βx) (Ramachandran et al. 2017); β = 1 is SiLU; learnable=true trains β (one per layer)."""

    def __init__(self, beta: float = 1.0, learnable: bool = False):
        super().__init__()
        beta = torch.tensor(float(beta))
        if learnable:
            self.beta = nn.Parameter(beta)
        else:
            self.register_buffer("beta", beta)

    def forward(self, x):
        return x * torch.sigmoid(self.beta * x)

    def extra_repr(self):
        return f"beta={float(self.beta):g}, learnable={isinstance(self.beta, nn.Parameter)}"


class SwiGLU(nn.Module):
    """Swish_β(a) ⊗ b, where (a, b) are the two halves of the channel dimension (Shazeer 2020, eq. 5).

    The layer before produces 2·D channels (xW+b and xV+c side by side, see `in_factor`); the output has D.
    Works on (N, 2D) and (N, 2C, H, W): the gate is channel-wise.
    """

    in_factor = 2

    def __init__(self, beta: float = 1.0):
        super().__init__()
        self.register_buffer("beta", torch.tensor(float(beta)))
        self.init_gain = swiglu_gain(float(self.beta))

    def forward(self, x):
        if x.dim() < 2 or x.shape[1] % 2:
            raise ValueError(f"activation=swiglu needs an even channel count in dim 1, got shape {tuple(x.shape)}")
        a, b = x.chunk(2, dim=1)
        return a * torch.sigmoid(self.beta * a) * b

    def extra_repr(self):
        return f"beta={float(self.beta):g}"


def swiglu_gain(beta: float) -> float:
    """The Kaiming gain g with E[(Swish_β(g·z₁)·g·z₂)²] = 1 for z₁, z₂ ~ N(0, 1): unit second moment in and out.

    He et al.'s derivation (Var(y) = fan_in·Var(W)·E[x²]) applied to the gated product; the product is
    quadratic in the scale, so ReLU's √2 grows the second moment ≈ 1.6× in the first layer, and faster after.
    """
    z = torch.linspace(-12.0, 12.0, 4801, dtype=torch.float64)
    weight = torch.exp(-z ** 2 / 2) / math.sqrt(2 * math.pi) * (z[1] - z[0])  # N(0, 1) quadrature

    def second_moment(g):
        return float((((g * z) * torch.sigmoid(beta * g * z)) ** 2 * weight).sum()) * g * g
    low, high = 0.1, 10.0
    for _ in range(60):  # bisection: the second moment grows with g
        mid = (low + high) / 2
        low, high = (mid, high) if second_moment(mid) < 1 else (low, mid)
    return low


def materialize(model: nn.Module, batch: torch.Tensor):
    """Give lazily sized parameters (per-channel PReLU) their size with one forward pass in eval mode, no grad."""
    if not any(isinstance(m, LazyModuleMixin) for m in model.modules()):
        return
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(batch[:2])
    model.train(was_training)
