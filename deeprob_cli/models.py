"""Models (conf/model/): mlp, convnet, resnet. Try: deeprob train dataset=synthetic model=resnet

Every model takes `activation`, a factory that returns a fresh activation module per layer (the chosen
conf/activation/ option), never a hard-coded class. An activation may set `in_factor` (e.g. a gated unit
that halves its input) and the layer before it then produces that many times the width.
Regularizers that change a model (conf/regularizer/) find their places here: `DropoutSlot`s, the
`stochastic_depth` of each BasicBlock, ConvNet's max-pools and its `test_samples`.
"""
import math
from collections import OrderedDict
from typing import Annotated

import torch
from torch import nn

from .validate import Choice, Range

Norm = Annotated[str, Choice("batch", "none")]
Width = Annotated[int, Range(1, integer=True)]


def in_factor(activation) -> int:
    """How many times wider than its output the activation's input must be (2 for a gated unit)."""
    return getattr(activation(), "in_factor", 1)


def _norm(kind: str, channels: int, dims: int, eps: float = 1e-5, momentum: float = 0.1, affine_scale: bool = True):
    """Batch norm (ε, running-statistics momentum in torch's convention: new = (1−m)·old + m·batch); with
    affine_scale=False its scale γ stays frozen at 1 (only the bias β is trained)."""
    if kind == "batch":
        norm = (nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d)(channels, eps=eps, momentum=momentum)
        norm.weight.requires_grad_(affine_scale)
        return norm
    assert kind == "none", kind  # Norm declares the choices
    return nn.Identity()


class Scale(nn.Module):
    """x · a fixed factor."""

    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return x * self.factor

    def extra_repr(self):
        return f"factor={self.factor}"


class DropoutSlot(nn.Identity):
    """Identity until regularizer=dropout puts a layer here: dims=1 before a fully connected layer, 2 on conv maps."""

    def __init__(self, dims: int):
        super().__init__()
        self.dims = dims


class MLP(nn.Sequential):
    """Flatten, then `depth` hidden layers of Linear → norm → activation, then a linear classifier."""

    @staticmethod
    def provides(cfg) -> set:
        """What regularizers and preprocessing may rely on (config.check_fits): flat inputs, hidden FC layers and a
        place to drop units after them."""
        return {"flat_input"} | ({"fc_hidden", "unit_dropout"} if cfg.get("depth", 0) > 0 else set())

    def __init__(self, in_shape, num_classes, activation, depth: Annotated[int, Range(0, integer=True)] = 3,
                 width: Width = 512, norm: Norm = "none"):
        k = in_factor(activation)
        layers = OrderedDict(flatten=nn.Flatten())
        features = in_shape[0] * in_shape[1] * in_shape[2]
        for i in range(1, depth + 1):
            layers[f"fc{i}"] = nn.Linear(features, width * k, bias=norm == "none")
            layers[f"norm{i}"] = _norm(norm, width * k, 1)
            layers[f"act{i}"] = activation()
            layers[f"dropout{i}"] = DropoutSlot(1)
            features = width
        layers["head"] = nn.Linear(features, num_classes)
        super().__init__(layers)


class ConvNet(nn.Sequential):
    """VGG-style stages of (conv3×3 → norm → activation) × convs_per_stage then 2×2 max-pool; global pool; linear.

    pool="first" moves each stage's max-pool after its first conv block, so the stage's later convs run at half
    resolution (the block of fast CIFAR trainers such as Keller Jordan's airbench): about ¼ of their cost.

    In eval mode with test_samples > 1 (random pooling: regularizer=fractional_pool) the prediction is the mean
    of the class probabilities over that many forward passes, returned as log-probabilities (valid logits).
    """

    @staticmethod
    def provides(cfg) -> set:
        return {"conv", "max_pool", "unit_dropout"}

    test_samples = 1

    def __init__(self, in_shape, num_classes, activation, widths: list[int] = (32, 64, 128),
                 convs_per_stage: Width = 2, norm: Norm = "batch",
                 pool: Annotated[str, Choice("last", "first")] = "last",
                 block_order: Annotated[str, Choice("conv_norm_act", "conv_pool_norm_act")] = "conv_norm_act",
                 norm_eps: Annotated[float, Range(0, low_open=True)] = 1e-5,
                 norm_momentum: Annotated[float, Range(0, 1)] = 0.1, norm_affine_scale: bool = True,
                 input_activation: bool = False, head_pool: Annotated[str, Choice("avg", "max")] = "avg",
                 head_bias: bool = True, logit_scale: Annotated[float, Range(0, low_open=True)] = 1.0):
        if not all(isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in widths):
            raise ValueError(f"widths: {list(widths)!r} is not allowed; expected a list of positive integers")
        k = in_factor(activation)
        layers = OrderedDict()
        if input_activation:  # e.g. after patch whitening with ± channels (airbench): act(x) and act(−x) differ
            layers["act0"] = activation()
        channels, size = in_shape[0], min(in_shape[1], in_shape[2])
        for s, width in enumerate(widths, start=1):
            for c in range(1, convs_per_stage + 1):
                layers[f"conv{s}_{c}"] = nn.Conv2d(channels, width * k, 3, padding=1, bias=norm == "none")
                pools = c == (1 if pool == "first" else convs_per_stage) and size >= 2  # small images: stop at 1×1
                if pools and block_order == "conv_pool_norm_act":  # norm and activation on ¼ of the pixels
                    layers[f"pool{s}"] = nn.MaxPool2d(2)
                layers[f"norm{s}_{c}"] = _norm(norm, width * k, 2, norm_eps, norm_momentum, norm_affine_scale)
                layers[f"act{s}_{c}"] = activation()
                channels = width
                if pools:
                    if block_order == "conv_norm_act":
                        layers[f"pool{s}"] = nn.MaxPool2d(2)
                    size //= 2
            layers[f"dropout{s}"] = DropoutSlot(2)
        layers["gap"] = nn.AdaptiveAvgPool2d(1) if head_pool == "avg" else nn.AdaptiveMaxPool2d(1)
        layers["flatten"] = nn.Flatten()
        layers["dropout"] = DropoutSlot(1)
        layers["head"] = nn.Linear(channels, num_classes, bias=head_bias)
        if logit_scale != 1.0:  # a fixed temperature on the logits (airbench: 1/9), not trained
            layers["logit_scale"] = Scale(logit_scale)
        super().__init__(layers)

    def forward(self, x):
        if self.training or self.test_samples == 1:
            return super().forward(x)
        # Graham 2014: average the predictions of several random poolings at test
        log_probs = torch.stack([super(ConvNet, self).forward(x).log_softmax(1) for _ in range(self.test_samples)])
        return log_probs.logsumexp(0) - math.log(self.test_samples)


class BasicBlock(nn.Module):
    """out = act(F(x) + shortcut(x)), F = conv → norm → act → conv → norm (He et al. 2016).

    `dropout` (between the convs, as in wide ResNets) and `stochastic_depth` (on F) are identities until a
    regularizer sets them. Without normalization (norm="none") the block carries Fixup's scalars (Zhang et al.
    2019, section 3): a bias before each conv and activation and a multiplier on the branch,
    F = scale·conv2(act(conv1(x + b1a) + b1b) + b2a) + b2b, the shortcut fed x + b1a; they start as the
    identity (0 and 1), so any init sees the plain block, and init=fixup relies on them.
    """

    def __init__(self, c_in, c_out, stride, activation, norm):
        super().__init__()
        self.fixup = norm == "none"
        if self.fixup:
            for name in ("bias1a", "bias1b", "bias2a", "bias2b"):
                setattr(self, name, nn.Parameter(torch.zeros(1)))
            self.scale = nn.Parameter(torch.ones(1))
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=norm == "none")
        self.norm1 = _norm(norm, c_out, 2)
        self.act1 = activation()
        self.dropout = DropoutSlot(2)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=norm == "none")
        self.norm2 = _norm(norm, c_out, 2)
        self.act2 = activation()
        self.stochastic_depth = nn.Identity()
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), _norm(norm, c_out, 2))

    def residual(self, x):
        """The residual branch F(x)."""
        if self.fixup:
            h = self.act1(self.conv1(x + self.bias1a) + self.bias1b)
            return self.conv2(self.dropout(h) + self.bias2a) * self.scale + self.bias2b
        return self.norm2(self.conv2(self.dropout(self.act1(self.norm1(self.conv1(x))))))

    def forward(self, x):
        shortcut = self.shortcut(x + self.bias1a if self.fixup else x)
        return self.act2(self.stochastic_depth(self.residual(x)) + shortcut)


class ResNet(nn.Module):
    """CIFAR ResNet: a 3×3 stem, three stages of (depth−2)/6 basic blocks at width, 2·width, 4·width; linear."""

    @staticmethod
    def provides(cfg) -> set:
        return ({"conv", "residual", "unit_dropout"}
                | ({"unnormalized_residual"} if cfg.get("norm", "batch") == "none" else set()))

    def __init__(self, in_shape, num_classes, activation, depth: Annotated[int, Range(8, integer=True)] = 20,
                 width: Width = 16, norm: Norm = "batch"):
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"depth: {depth} is not of the form 6n+2 with n ≥ 1 (8, 14, 20, 32, 44, 56, ...)")
        if in_factor(activation) != 1:
            raise ValueError("model=resnet: a gated activation cannot feed a residual sum of equal widths; "
                             "use model=mlp or model=convnet with it")
        n = (depth - 2) // 6
        self.stem = nn.Sequential(nn.Conv2d(in_shape[0], width, 3, 1, 1, bias=norm == "none"),
                                  _norm(norm, width, 2), activation())
        blocks, c_in = [], width
        for stage, c_out in enumerate((width, 2 * width, 4 * width)):
            for i in range(n):
                blocks.append(BasicBlock(c_in, c_out, 2 if stage > 0 and i == 0 else 1, activation, norm))
                c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), DropoutSlot(1), nn.Linear(c_in, num_classes))

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)))
