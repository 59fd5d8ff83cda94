"""Weight initialization (conf/init/). Try: deeprob train dataset=synthetic init=xavier

Every option is a function `scheme(model, *, activation, batch, **params)` that re-initializes the weights of
every Linear and Conv layer in place. `activation` is one instance of the chosen activation (Kaiming's gain
follows it); `batch` is one preprocessed training batch (for data-dependent schemes).
"""
import math

import torch
from torch import nn

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
    if isinstance(activation, (nn.LeakyReLU, nn.PReLU)):
        slope = activation.negative_slope if isinstance(activation, nn.LeakyReLU) else float(activation.weight.mean())
        return nn.init.calculate_gain("leaky_relu", slope)
    if isinstance(activation, nn.SELU):
        return 1.0  # self-normalizing nets use LeCun's init: Var(W) = 1/fan_in (Klambauer et al. 2017)
    for kind, name in ((nn.ReLU, "relu"), (nn.Tanh, "tanh"), (nn.Sigmoid, "sigmoid")):
        if isinstance(activation, kind):
            return nn.init.calculate_gain(name)
    nonlinearity = getattr(activation, "init_gain", None)  # our own activations state theirs
    if nonlinearity is not None:
        return float(nonlinearity)
    return math.sqrt(2.0)  # ReLU-like (GELU, SiLU, ELU): the He gain is the usual choice


def _fill(layer, std: float, distribution: str):
    if distribution == "normal":
        nn.init.normal_(layer.weight, 0.0, std)
    elif distribution == "uniform":
        bound = math.sqrt(3.0) * std  # U(-b, b) has std b/√3
        nn.init.uniform_(layer.weight, -bound, bound)
    else:
        raise ValueError(f"init.distribution: {distribution!r} is not one of normal, uniform")


def _set_bias(model, bias):
    if bias is None:
        return
    for layer in layers(model):
        if layer.bias is not None:
            nn.init.constant_(layer.bias, bias)


def default(model, *, activation=None, batch=None, bias=None):
    """Keep PyTorch's layer defaults (optionally a constant bias)."""
    _set_bias(model, bias)


def xavier(model, *, activation=None, batch=None, distribution="normal", glorot=False, bias=0.0):
    """std = 1/√fan_in (the lecture's Xavier), or √(2/(fan_in+fan_out)) with glorot=true."""
    for layer in layers(model):
        var = 2.0 / (fan_in(layer) + fan_out(layer)) if glorot else 1.0 / fan_in(layer)
        _fill(layer, math.sqrt(var), distribution)
    _set_bias(model, bias)


def kaiming(model, *, activation=None, batch=None, mode="fan_in", distribution="normal", bias=0.0):
    """std = gain/√fan (He et al. 2015); for ReLU gain = √2, i.e. std = √(2/Din)."""
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"init.mode: {mode!r} is not one of fan_in, fan_out")
    g = gain(activation) if activation is not None else math.sqrt(2.0)
    for layer in layers(model):
        fan = fan_in(layer) if mode == "fan_in" else fan_out(layer)
        _fill(layer, g / math.sqrt(fan), distribution)
    _set_bias(model, bias)
