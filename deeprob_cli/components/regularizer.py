"""Regularizers (conf/regularizer/, multi-select). Try: deeprob train dataset=synthetic regularizer=[dropout,mixup]

| option           | what it does in training                                  | at test                             |
|------------------|-----------------------------------------------------------|-------------------------------------|
| l2               | λ·ΣW² added to the loss, or decoupled W ← W − lr·2λ·W     | —                                   |
| l1               | λ·Σ|W| added to the loss, or soft-thresholded (proximal)  | —                                   |
| elastic_net      | λ·Σ(β·W² + |W|) added to the loss                         | —                                   |
| dropout          | units zeroed with probability p, kept ones scaled 1/(1−p) | nothing dropped, no rescaling       |
|                  | (scale=test: kept ones unscaled)                          | (scale=test: outputs × (1−p))       |
| dropconnect      | weights of hidden FC layers zeroed, kept ones scaled      | all connections                     |
| fractional_pool  | max-pools become random fractional max-pools              | mean prediction of several poolings |
| stochastic_depth | residual branches skipped, survival decaying with depth   | whole network (scale=test: each     |
|                  |                                                           | branch × its survival probability)  |
| cutout           | a random square set to zero / the mean / random values    | whole image                         |
| mixup            | pairs of images and labels blended, λ ~ Beta(a, a)        | original images                     |
| cutmix           | a box of one image pasted into another, labels by area    | original images                     |
| label_smoothing  | targets 1−(K−1)/K·ε on the true class, ε/K elsewhere      | —                                   |
| model.norm=batch | batch normalization with the batch's statistics           | running statistics                  |

Weight penalties apply to Linear and Conv weights only (biases, normalization and activation parameters are
exempt). Mixup and cutmix selected together take turns, one per batch. Label smoothing applies to mixed targets
too: the loss sees (1−ε)·mixed + ε/K.
Training accuracy under mixed labels (train/acc) counts a prediction as correct when it is the dominant label of
its target (the class of largest weight); unmixed batches use the plain labels.

A regularizer is any object with some of these hooks; train.py uses each one that exists:
  apply(model, activation)   change the model before init (activation: one instance of the chosen activation);
                             what the model must have is declared by `needs(node)` and refused by
                             config.check_fits before anything runs; ValueError for what only apply() can see
  mix(x, targets, generator) -> (x, targets)   change a preprocessed batch on the training device;
                             an option that blends labels sets `mixes_labels = True` and gets (N, K)
                             class probabilities as targets, the others get what came before (labels)
  label_smoothing: float     ε of the cross-entropy (torch's label_smoothing, the lecture's formula)
  penalty(model) -> tensor   added to the loss (0.0 when it has nothing to add)
  after_step(model, lr)      after optimizer.step()
"""
import functools
import logging
from typing import Annotated

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from .. import UserError
from ..models import BasicBlock, DropoutSlot
from ..validate import Choice, Range

log = logging.getLogger("deeprob")
NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)
# parameter declarations shared by several options (deeprob_cli.validate checks them before anything is built)
Strength = Annotated[float, Range(0)]
DropProbability = Annotated[float, Range(0, 1, high_open=True, what="a drop probability")]
Scale = Annotated[str, Choice("train", "test")]


# ---------------------------------------------------------------- how train.py uses the selection

class Regularizers:
    """The selected regularizers behind five fixed hooks, in the order a training step meets them:
    change_model (before init), mix (a batch), loss (cross-entropy, label-smoothed), penalty, after_step."""

    def __init__(self, regularizers: list, num_classes: int):
        self.chosen = list(regularizers)
        self.mix = batch_mixer(self.chosen, num_classes)  # (x, labels, generator, step) -> (x, targets, labels)
        self.loss = loss_function(self.chosen)  # (logits, targets) -> cross-entropy
        self.penalties = [r for r in self.chosen if hasattr(r, "penalty")]
        self.after_steps = [r for r in self.chosen if hasattr(r, "after_step")]

    def change_model(self, model: nn.Module, activation: nn.Module) -> nn.Module:
        """dropout, dropconnect, fractional pooling, stochastic depth: let each change the model (before init)."""
        return apply_to_model(self.chosen, model, activation)

    def penalty(self, model: nn.Module):
        """The weight penalties' sum (0.0 when none is selected)."""
        return sum(r.penalty(model) for r in self.penalties)

    def after_step(self, model: nn.Module, lr: float):
        for r in self.after_steps:
            r.after_step(model, lr)


def apply_to_model(regularizers, model: nn.Module, activation: nn.Module) -> nn.Module:
    """Let every selected regularizer change the model (before init); one line of error if one has no place."""
    for reg in regularizers:
        if hasattr(reg, "apply"):
            try:
                reg.apply(model, activation)
            except ValueError as e:
                raise UserError(str(e)) from None
    return model


def batch_mixer(regularizers, num_classes: int):
    """mix(x, labels, generator, step) -> (x, targets, labels): the batch after cutout/mixup/cutmix.

    targets are class probabilities when labels were blended (else the labels); the returned labels are the
    dominant label of each target, which train/acc counts against.
    """
    mixers = [r for r in regularizers if hasattr(r, "mix") and not getattr(r, "mixes_labels", False)]
    blenders = [r for r in regularizers if getattr(r, "mixes_labels", False)]

    def mix(x, labels, generator=None, step=0):
        targets = labels
        for reg in mixers:
            x, targets = reg.mix(x, targets, generator)
        if blenders:  # mixup and cutmix together: one of them per batch, in turn (by step: a resume keeps the turn)
            blender = blenders[step % len(blenders)]
            x, targets = blender.mix(x, F.one_hot(labels, num_classes).to(x.dtype), generator)
            labels = targets.argmax(1)
        return x, targets, labels

    return mix


def loss_function(regularizers):
    """Cross-entropy on labels or class probabilities, label-smoothed by the selection's ε (0 without one)."""
    epsilon = sum(getattr(r, "label_smoothing", 0.0) for r in regularizers)
    return functools.partial(F.cross_entropy, label_smoothing=epsilon)


# ---------------------------------------------------------------- weight penalties

DECAYED_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def decayed_weights(model: nn.Module):
    """The weights that weight decay applies to: the weight matrices of Linear and Conv layers only.

    Exempt: biases, normalization parameters, activation parameters (PReLU's α, Swish's β: He et al. 2015 §2.1
    apply no decay to α, which would pull it to 0 and turn PReLU into ReLU) and Fixup's scalar biases and
    multipliers.
    """
    for module in model.modules():
        if isinstance(module, DECAYED_TYPES) and module.weight.requires_grad:
            yield module.weight


class L2:
    """The lecture's λ·ΣW², in one of two equivalent places: in the loss (gradient 2λW), or decoupled from the
    gradient (Loshchilov & Hutter 2019) as W ← W − lr·2λ·W after each step. λ means the same in both: under
    plain SGD a decoupled step shrinks W as the coupled gradient would (to first order in lr); under momentum
    or Adam they differ (the decoupled shrink bypasses the optimizer's moments), which is the point of it."""

    def __init__(self, strength: Strength = 2.5e-4, decoupled: bool = False):
        self.strength, self.decoupled = strength, decoupled

    def penalty(self, model):
        if self.decoupled:
            return 0.0
        return self.strength * sum(w.pow(2).sum() for w in decayed_weights(model))

    @torch.no_grad()
    def after_step(self, model, lr: float):
        if self.decoupled:
            for w in decayed_weights(model):
                w.mul_(1 - lr * 2 * self.strength)


class L1:
    """λ·Σ|W|, as a subgradient λ·sign(W) in the loss, or (proximal=true) a soft-threshold after each step,
    W ← sign(W)·max(|W| − lr·λ, 0): the proximal gradient step of ISTA (Beck & Teboulle 2009), which sets
    weights exactly to zero where plain subgradient steps only oscillate around it."""

    def __init__(self, strength: Strength = 1e-5, proximal: bool = False):
        self.strength, self.proximal = strength, proximal

    def penalty(self, model):
        if self.proximal:
            return 0.0
        return self.strength * sum(w.abs().sum() for w in decayed_weights(model))

    @torch.no_grad()
    def after_step(self, model, lr: float):
        if self.proximal:
            for w in decayed_weights(model):
                w.copy_(F.softshrink(w, lr * self.strength))


class ElasticNet:
    """λ·Σ(β·W² + |W|) (Zou & Hastie 2005, the lecture's form): gradient λ·(2βW + sign(W))."""

    def __init__(self, strength: Strength = 1e-5, beta: Annotated[float, Range(0)] = 25.0):
        self.strength, self.beta = strength, beta

    def penalty(self, model):
        return self.strength * sum((self.beta * w.pow(2) + w.abs()).sum() for w in decayed_weights(model))


# ---------------------------------------------------------------- changes to the model

class VanillaDropout(nn.Dropout):
    """Dropout as first published (Hinton et al. 2012, Srivastava et al. 2014): in training kept units pass
    unscaled, at test every unit is multiplied by the keep probability 1−p. The same expected output as
    inverted dropout (torch's nn.Dropout, which scales by 1/(1−p) in training instead); `channels` drops whole
    feature maps (nn.Dropout2d's mask)."""

    def __init__(self, p: float = 0.5, channels: bool = False):
        super().__init__(p)
        self.channels = channels

    def forward(self, x):
        if not self.training:
            return x * (1 - self.p)
        shape = (*x.shape[:2], *([1] * (x.dim() - 2))) if self.channels else x.shape  # whole maps, or units
        return x * torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(1 - self.p)

    def extra_repr(self):
        return f"p={self.p}, channels={self.channels}"


class Dropout:
    """Dropout in the model's DropoutSlots: before FC layers (units) and on conv maps (whole channels).
    scale=train is inverted dropout (nn.Dropout, nn.Dropout2d); scale=test the original rule (VanillaDropout)."""

    @staticmethod
    def needs(node):
        """(capability of the model, what it is for, the fix) for config.check_fits, or None."""
        if node.get("conv_p", 0):  # the models with conv maps also have a place to drop units
            return ("conv", f"conv_p={node.conv_p} drops conv feature maps",
                    "set regularizer.dropout.conv_p=0 or use model=convnet/resnet")
        return ("unit_dropout", "needs a fully connected layer after a hidden layer to drop units before",
                "use model.depth ≥ 1 with model=mlp, or model=convnet/resnet")

    def __init__(self, p: DropProbability = 0.5, conv_p: DropProbability = 0.0, scale: Scale = "train"):
        self.p, self.conv_p, self.scale = p, conv_p, scale

    def apply(self, model, activation):
        selu = isinstance(activation, nn.SELU)
        if selu and self.scale == "test":  # the one rule that depends on the activation: checked here
            raise ValueError("regularizer=dropout: scale=test has no alpha-dropout form (activation=selu); "
                             "use scale=train")
        if selu:  # Klambauer et al. 2017: alpha dropout keeps SELU's zero mean and unit variance
            log.info("regularizer=dropout: activation is SELU, so alpha dropout replaces dropout")
        slots = [(name, m) for name, m in model.named_modules() if isinstance(m, DropoutSlot)]
        assert any(m.dims == 1 for _, m in slots), "config.check_fits refuses a model without unit_dropout"
        vanilla = self.scale == "test"
        for name, slot in slots:
            if slot.dims == 1 and self.p > 0:
                layer = VanillaDropout(self.p) if vanilla else nn.AlphaDropout(self.p) if selu else nn.Dropout(self.p)
                _replace(model, name, layer)
            elif slot.dims == 2 and self.conv_p > 0:
                layer = (VanillaDropout(self.conv_p, channels=True) if vanilla else
                         nn.FeatureAlphaDropout(self.conv_p) if selu else nn.Dropout2d(self.conv_p))
                _replace(model, name, layer)


class DropConnectLinear(nn.Linear):
    """nn.Linear whose weights, in training, are zeroed with probability p and the kept ones scaled by 1/(1−p).

    DropConnect (Wan et al. 2013) with inverted scaling, so E[Wx] is unchanged and the test uses all weights
    (the paper's test-time Gaussian moment matching is not done); the bias is kept. One mask per batch by
    default; per_example=True draws one per example as the paper does (a weight matrix per image: memory
    batch × out × in).
    """

    def __init__(self, in_features, out_features, bias=True, p=0.5, per_example=False, device=None, dtype=None):
        super().__init__(in_features, out_features, bias, device, dtype)
        self.p, self.per_example = p, per_example

    def forward(self, x):
        if not (self.training and self.per_example) or x.dim() != 2:
            return F.linear(x, F.dropout(self.weight, self.p, self.training), self.bias)
        masks = F.dropout(self.weight.new_ones(len(x), *self.weight.shape), self.p, True)  # (N, out, in)
        out = torch.bmm(masks * self.weight, x.unsqueeze(2)).squeeze(2)
        return out if self.bias is None else out + self.bias

    def extra_repr(self):
        return f"{super().extra_repr()}, p={self.p}, per_example={self.per_example}"


class DropConnect:
    """Every hidden fully connected layer (every nn.Linear but the classifier) becomes a DropConnectLinear."""

    @staticmethod
    def needs(node):
        return "fc_hidden", "needs fully connected hidden layers", "use model=mlp (depth ≥ 1)"

    def __init__(self, p: DropProbability = 0.5, per_example: bool = False):
        self.p, self.per_example = p, per_example

    def apply(self, model, activation):
        linears = [(name, m) for name, m in model.named_modules() if type(m) is nn.Linear][:-1]
        assert linears, "config.check_fits refuses a model without fc_hidden"
        for name, old in linears:
            new = DropConnectLinear(old.in_features, old.out_features, old.bias is not None, self.p,
                                    self.per_example, device=old.weight.device, dtype=old.weight.dtype)
            new.weight, new.bias = old.weight, old.bias  # same parameters, same state_dict keys
            _replace(model, name, new)


class FractionalPool:
    """Every nn.MaxPool2d becomes nn.FractionalMaxPool2d (Graham 2014); the test averages test_samples poolings."""

    @staticmethod
    def needs(node):
        return "max_pool", "replaces max-pooling", "use model=convnet"

    def __init__(self, ratio: Annotated[float, Range(0, 1, low_open=True, high_open=True)] = 2 ** -0.5,
                 test_samples: Annotated[int, Range(1, integer=True)] = 4,
                 kernel_size: Annotated[int, Range(1, integer=True)] = 2):
        self.ratio, self.test_samples, self.kernel_size = ratio, test_samples, kernel_size

    def apply(self, model, activation):
        pools = [name for name, m in model.named_modules() if isinstance(m, nn.MaxPool2d)]
        assert pools and hasattr(model, "test_samples"), "config.check_fits refuses a model without max_pool"
        for name in pools:
            _replace(model, name, nn.FractionalMaxPool2d(self.kernel_size, output_ratio=self.ratio))
        model.test_samples = self.test_samples


class ExpectedDepth(nn.Module):
    """Stochastic depth as Huang et al. 2016 wrote it: in training a branch is kept (unscaled) with probability
    `survival`, at test it is multiplied by `survival` (eq. 5: the expected branch over the drops)."""

    def __init__(self, survival: float, mode: str):
        super().__init__()
        self.survival, self.mode = survival, mode

    def forward(self, x):
        if not self.training:
            return x * self.survival
        shape = (x.shape[0], *([1] * (x.dim() - 1))) if self.mode == "row" else (1,) * x.dim()
        return x * torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(self.survival)

    def extra_repr(self):
        return f"survival={self.survival:.4g}, mode={self.mode}"


class StochasticDepth:
    """Block l of L keeps its residual branch with probability 1 − l/L·(1 − final_survival) (Huang et al. 2016).

    scale=train (default): torchvision.ops.StochasticDepth scales a kept branch by 1/survival in training, so
    the test runs the whole network unscaled. scale=test: the paper's rule, kept branches unscaled in training
    and each branch times its survival probability at test (ExpectedDepth); both give the same expected
    output. mode=row (default) draws per image; mode=batch one draw per block for the whole batch (the paper).
    """

    @staticmethod
    def needs(node):
        return "residual", "needs residual blocks", "use model=resnet"

    def __init__(self,
                 final_survival: Annotated[float, Range(0, 1, low_open=True, what="a survival probability")] = 0.5,
                 mode: Annotated[str, Choice("row", "batch")] = "row", scale: Scale = "train"):
        self.final_survival, self.mode, self.scale = final_survival, mode, scale

    def survival(self, depth: int) -> list:
        """Survival probability of blocks 1..depth: linear decay from 1 to final_survival."""
        return [1 - l / depth * (1 - self.final_survival) for l in range(1, depth + 1)]

    def apply(self, model, activation):
        blocks = [m for m in model.modules() if isinstance(m, BasicBlock)]
        assert blocks, "config.check_fits refuses a model without residual blocks"
        for block, keep in zip(blocks, self.survival(len(blocks))):
            block.stochastic_depth = (ExpectedDepth(keep, self.mode) if self.scale == "test" else
                                      torchvision.ops.StochasticDepth(1 - keep, self.mode))


def _replace(model: nn.Module, name: str, new: nn.Module):
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


# ---------------------------------------------------------------- batch mixing (per example, on the device)
# torchvision.transforms.v2 MixUp, CutMix and RandomErasing draw one set of parameters per call, i.e. per batch
# tensor; these draw per example, in a few batched tensor ops.

def _boxes(n, h, w, side_h, side_w, generator, device):
    """A (n, h, w) bool mask per example: a side_h×side_w box (per-example sizes) around a uniform random centre,
    clipped at the border."""
    cy = torch.randint(0, h, (n,), generator=generator, device=device).view(n, 1, 1)
    cx = torch.randint(0, w, (n,), generator=generator, device=device).view(n, 1, 1)
    top, left = cy - side_h.view(n, 1, 1) // 2, cx - side_w.view(n, 1, 1) // 2
    rows = torch.arange(h, device=device).view(1, h, 1)
    cols = torch.arange(w, device=device).view(1, 1, w)
    return (rows >= top) & (rows < top + side_h.view(n, 1, 1)) & (cols >= left) & (cols < left + side_w.view(n, 1, 1))


def _partners(n, generator, device):
    return torch.randperm(n, generator=generator, device=device)


def _beta(alpha: float, n: int, device):
    # torch's Beta sampler takes no generator: it draws from torch's global RNG, seeded by trainer.seed
    a = torch.tensor(float(alpha), device=device)
    return torch.distributions.Beta(a, a).sample((n,))


class Cutout:
    """A random square (side = size × the image side, centre anywhere) per image (DeVries & Taylor 2017).

    fill: zero (the model input's zero: the mean colour after preprocess=standardize), mean (the batch's mean per
    channel), or random (per-pixel values with the batch's channel mean and std: the random-erasing variant,
    Zhong et al. 2020, with square boxes). Each image is cut with probability p.
    """

    def __init__(self, size: Annotated[float, Range(0, 1, low_open=True, what="a fraction of the image side")] = 0.5,
                 fill: Annotated[str, Choice("zero", "mean", "random")] = "zero",
                 p: Annotated[float, Range(0, 1, what="a probability")] = 1.0):
        self.size, self.fill, self.p = size, fill, p

    def mix(self, x, targets, generator=None):
        n, c, h, w = x.shape
        device = generator.device if generator is not None else x.device
        side_h = torch.full((n,), max(1, round(self.size * h)), device=device)
        side_w = torch.full((n,), max(1, round(self.size * w)), device=device)
        box = _boxes(n, h, w, side_h, side_w, generator, device)
        box &= (torch.rand(n, generator=generator, device=device) < self.p).view(n, 1, 1)
        box = box.to(x.device).unsqueeze(1)
        if self.fill == "zero":
            return x.masked_fill(box, 0.0), targets
        mean = x.mean((0, 2, 3), keepdim=True)
        if self.fill == "mean":
            return torch.where(box, mean, x), targets
        noise = torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)
        return torch.where(box, mean + x.std((0, 2, 3), keepdim=True) * noise, x), targets


class Mixup:
    """x ← λ·x + (1−λ)·x_j and the same for the class probabilities, λ ~ Beta(alpha, alpha) per example
    (Zhang et al. 2018), partner j from a random permutation of the batch."""

    mixes_labels = True

    def __init__(self, alpha: Annotated[float, Range(0, low_open=True)] = 0.2):
        self.alpha = alpha

    def mix(self, x, targets, generator=None):
        n = len(x)
        device = generator.device if generator is not None else x.device
        j = _partners(n, generator, device).to(x.device)
        lam = _beta(self.alpha, n, x.device).to(x.dtype)
        x = lam.view(n, 1, 1, 1) * x + (1 - lam.view(n, 1, 1, 1)) * x[j]
        return x, lam.view(n, 1) * targets + (1 - lam.view(n, 1)) * targets[j]


class CutMix:
    """Paste a box of a partner image, area fraction 1−λ with λ ~ Beta(alpha, alpha), into each image
    (Yun et al. 2019); the partner's label weight is the pasted area fraction after clipping at the border."""

    mixes_labels = True

    def __init__(self, alpha: Annotated[float, Range(0, low_open=True)] = 1.0):
        self.alpha = alpha

    def mix(self, x, targets, generator=None):
        n, c, h, w = x.shape
        device = generator.device if generator is not None else x.device
        j = _partners(n, generator, device)
        cut = (1 - _beta(self.alpha, n, device)).sqrt()  # box side / image side
        box = _boxes(n, h, w, (cut * h).round().long(), (cut * w).round().long(), generator, device)
        area = box.flatten(1).to(x.dtype).mean(1).to(x.device)
        j, box = j.to(x.device), box.to(x.device)
        x = torch.where(box.unsqueeze(1), x[j], x)
        return x, (1 - area.view(n, 1)) * targets + area.view(n, 1) * targets[j]


class LabelSmoothing:
    """Targets 1−(K−1)/K·ε on the true class and ε/K elsewhere: exactly cross_entropy(..., label_smoothing=ε),
    which on class probabilities q uses (1−ε)·q + ε/K (Szegedy et al. 2016)."""

    def __init__(self, epsilon: Annotated[float, Range(0, 1)] = 0.1):
        self.label_smoothing = epsilon
