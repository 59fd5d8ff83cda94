"""Optimizers (conf/optim/) and the parameter groups train.py hands them. Try:
    deeprob train dataset=synthetic optim.norm_bias_lr_scale=64 optim.step_decay=2e-3

`param_groups(model, preprocess, batch_size)` splits the trained parameters by role (norm biases apart from the
rest, the rest first so that `param_groups[0]` is the main group) and tags every group with its role and the
images per step; torch's optimizers keep such extra keys and ignore them, deeprob's SGD reads them.
"""
from typing import Annotated

import torch
from torch import nn

from ..validate import Choice, Range

NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def param_groups(model: nn.Module, preprocess: nn.Module | None = None, batch_size: int = 1024) -> list[dict]:
    """[{params, role, batch_size}]: role "weights" (all but norm biases, incl. trainable preprocessing) first,
    then "norm_bias"; frozen model parameters are left out, empty groups dropped."""
    norm_biases = {id(m.bias) for m in model.modules() if isinstance(m, NORMS) and getattr(m, "bias", None) is not None}
    main = [p for p in model.parameters() if p.requires_grad and id(p) not in norm_biases]
    main += list(preprocess.parameters()) if preprocess is not None else []  # trainable for some epochs only
    biases = [p for p in model.parameters() if p.requires_grad and id(p) in norm_biases]
    groups = [{"params": main, "role": "weights"}, {"params": biases, "role": "norm_bias"}]
    return [dict(g, batch_size=batch_size) for g in groups if g["params"]]


class SGD(torch.optim.SGD):
    """torch's SGD (momentum, Nesterov) with two additions for recipes that tune groups apart:
    `norm_bias_lr_scale` multiplies the lr of normalization biases (airbench: 64), and `step_decay`, a weight
    decay of every trained parameter given as the shrink per step per 1024 images at the peak lr: each group's
    torch weight_decay is step_decay·(batch/1024)/group_lr, so the shrink lr_t·weight_decay per step is the same
    for every group whatever its lr multiplier, unchanged when optim.lr changes, linear in the batch size, and it
    follows the schedule (and, being in the gradient, the momentum: the shrink settles at step_decay/(1−momentum)
    per step). This is Keller Jordan's airbench convention (its 0.0153 per 1024 examples over (1 + 1/(1−momentum))
    is step_decay ≈ 2e-3 at momentum 0.85). `weight_decay` is torch's own coefficient, added to it."""

    def __init__(self, params, lr: Annotated[float, Range(0, low_open=True)] = 0.05,
                 momentum: Annotated[float, Range(0, 1, high_open=True)] = 0.9, nesterov: bool = True,
                 weight_decay: Annotated[float, Range(0)] = 0.0,
                 norm_bias_lr_scale: Annotated[float, Range(0, low_open=True)] = 1.0,
                 step_decay: Annotated[float, Range(0)] = 0.0):
        groups = list(params)
        if groups and not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for g in groups:
            g["lr"] = float32_range(lr * (norm_bias_lr_scale if g.get("role") == "norm_bias" else 1.0),
                                    "lr × norm_bias_lr_scale" if g.get("role") == "norm_bias" else "lr")
            g["weight_decay"] = float32_range(weight_decay + step_decay * g.get("batch_size", 1024) / 1024 / g["lr"],
                                              "weight_decay + step_decay ÷ lr", underflow=False)
        super().__init__(groups, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)


FLOAT32 = torch.finfo(torch.float32)


def float32_range(value: float, formed: str, underflow: bool = True) -> float:
    """A hyperparameter the optimizer forms from the user's values, refused where float32 arithmetic cannot hold
    it (an overflow to inf; for a step size, one so small it underflows to 0): the parameters are float32."""
    if value != 0 and not (FLOAT32.tiny if underflow else 0) <= abs(value) <= FLOAT32.max:
        raise ValueError(f"{formed} = {value:.3g} is outside float32's range [{FLOAT32.tiny:.3g}, {FLOAT32.max:.3g}]; "
                         f"choose values whose product stays inside it")
    return value


class Muon(torch.optim.Optimizer):
    """Muon on the weight matrices, Nesterov SGD on the rest (Jordan et al. 2024, "Muon: an optimizer for hidden
    layers in neural networks", kellerjordan.github.io/posts/muon; its CIFAR-10 record airbench94_muon.py in
    KellerJordan/cifar10-airbench). Three groups, in this order:
      "matrices": every trained weight with ≥ 3 dims (conv filters, each viewed as the matrix out × in·k·k), and
                  with `matrices="all"` the 2-D ones too (linear layers, the classifier), trained by torch's own
                  torch.optim.Muon (momentum, Nesterov, a Newton–Schulz orthogonalized update; lr = the step's
                  size in spectral norm, whatever the loss's scale). `normalize` rescales each matrix to
                  Frobenius norm √rows before its step, as the record does (the batch norm after each conv makes
                  the scale irrelevant to the function; the pinned norm keeps lr the relative step size);
      "head":     the other ≥ 2-D weights (the classifier), SGD at `head_lr`;
      "bias":     every 1-D (or 0-D) parameter — norm biases, the whitening bias, other biases — SGD at `bias_lr`.
    The SGD lrs are on deeprob's mean loss (the record's per-example lrs on a summed loss × its batch of 2,000),
    with weight decay given as optim=sgd's `step_decay`. Momentum buffers live in this optimizer's own state, so
    `state_dict()` (the checkpoint) holds them all and a resumed run continues bit for bit. Where torch's Muon
    differs from the record's code, the update is the same: its momentum is an average (buffer.lerp_) where the
    record's is a sum, a scale the orthogonalization removes; its lr factor √max(1, rows/cols) is 1 for conv
    filters (rows = out ≤ in·k·k)."""

    ROLES = ("matrices", "head", "bias")

    @staticmethod
    def needs(node):
        """(capability of the model, what it is for, the fix) for config.check_fits, or None."""
        if node.get("matrices", "filters") == "filters":
            return ("conv", "trains conv filters (weights with ≥ 3 dims)",
                    "use model=convnet or model=resnet, or optim.matrices=all (Muon on 2-D weights too)")
        return None

    def __init__(self, params, lr: Annotated[float, Range(0, low_open=True)] = 0.24,
                 momentum: Annotated[float, Range(0, 1, high_open=True)] = 0.6, nesterov: bool = True,
                 ns_steps: Annotated[int, Range(1, 99, integer=True)] = 5,
                 normalize: bool = True, weight_decay: Annotated[float, Range(0)] = 0.0,
                 matrices: Annotated[str, Choice("filters", "all")] = "filters",
                 sgd_momentum: Annotated[float, Range(0, 1, high_open=True)] = 0.85,
                 head_lr: Annotated[float, Range(0, low_open=True)] = 1.66,
                 bias_lr: Annotated[float, Range(0, low_open=True)] = 106.0,
                 step_decay: Annotated[float, Range(0)] = 2.048e-3):
        given = list(params)
        if given and not isinstance(given[0], dict):
            given = [{"params": given}]
        tensors = [p for g in given for p in g["params"]]
        batch = given[0].get("batch_size", 1024) if given else 1024
        smallest = 3 if matrices == "filters" else 2
        split = {"matrices": [p for p in tensors if p.dim() >= smallest],
                 "head": [p for p in tensors if 2 <= p.dim() < smallest],
                 "bias": [p for p in tensors if p.dim() < 2]}
        if not split["matrices"]:
            raise ValueError(f"matrices: {matrices!r} selects no parameter of this model (Muon trains weights with "
                             f"≥ {smallest} dims); use matrices=all or another optimizer")
        groups = [{"params": split["matrices"], "role": "matrices", "lr": lr, "momentum": momentum,
                   "nesterov": nesterov, "weight_decay": weight_decay}]
        for role, group_lr in (("head", head_lr), ("bias", bias_lr)):
            if split[role]:  # airbench's batch-scaled decay: shrink step_decay·batch/1024 per step at peak lr
                groups.append({"params": split[role], "role": role, "lr": group_lr, "momentum": sgd_momentum,
                               "nesterov": True,
                               "weight_decay": float32_range(step_decay * batch / 1024 / group_lr,
                                                             f"step_decay ÷ {role}_lr", underflow=False)})
        super().__init__([dict(g, batch_size=batch) for g in groups], {})
        self.normalize = normalize
        # torch's optimizers, each over its own groups; step() hands them this one's hyperparameters and state
        views = [as_matrix(p.detach()) for p in split["matrices"]]
        self.muon = torch.optim.Muon(views, lr=lr, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps,
                                     weight_decay=weight_decay)
        self.sgd = torch.optim.SGD(self.param_groups[1:]) if len(self.param_groups) > 1 else None

    @torch.no_grad()
    def step(self, closure=None):
        matrices, inner = self.param_groups[0], self.muon.param_groups[0]
        # the schedule sets lr here; a resume replaces this optimizer's groups and state (load_state_dict)
        inner.update({k: matrices[k] for k in ("lr", "momentum", "nesterov", "weight_decay")})
        for p, view in zip(matrices["params"], inner["params"]):
            view.grad = None if p.grad is None else as_matrix(p.grad, like=p)
            if view.grad is None:
                continue
            if self.normalize:  # Frobenius norm √rows, i.e. a per-row RMS of 1 (airbench94_muon)
                view.mul_(len(view) ** 0.5 / view.norm().clamp_min(1e-30))  # a zero matrix stays zero
            buffer = self.state[p].get("momentum_buffer")
            if buffer is None or buffer.stride() != p.stride():  # new, or restored in another memory layout
                buffer = self.state[p]["momentum_buffer"] = (
                    torch.zeros_like(p) if buffer is None else torch.empty_like(p).copy_(buffer))
            self.muon.state[view]["momentum_buffer"] = as_matrix(buffer)  # torch's Muon updates it in place
        self.muon.step()
        if self.sgd is not None:
            self.sgd.param_groups, self.sgd.state = self.param_groups[1:], self.state
            self.sgd.step()


def as_matrix(t: torch.Tensor, like: torch.Tensor | None = None) -> torch.Tensor:
    """A ≥ 2-D tensor as the matrix (rows, rest) that shares its storage: out × in·k·k for a contiguous conv
    filter, out × k·k·in for a channels_last one (a column permutation: the orthogonalized update permutes
    alike). `like`: lay t out as that tensor is laid out (a copy where the layouts differ)."""
    like = t if like is None else like
    channels_last = like.dim() == 4 and not like.is_contiguous() and like.is_contiguous(
        memory_format=torch.channels_last)
    if channels_last:
        matrix = t.permute(0, 2, 3, 1).reshape(len(t), -1)
    else:
        matrix = t.reshape(len(t), -1)
    assert like is not t or matrix.data_ptr() == t.data_ptr(), "as_matrix: not a view"
    return matrix
