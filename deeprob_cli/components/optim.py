"""Optimizers (conf/optim/) and the parameter groups train.py hands them. Try:
    deeprob train dataset=synthetic optim.norm_bias_lr_scale=64 optim.step_decay=2e-3

`param_groups(model, preprocess, batch_size)` splits the trained parameters by role (norm biases apart from the
rest, the rest first so that `param_groups[0]` is the main group) and tags every group with its role and the
images per step; torch's optimizers keep such extra keys and ignore them, deeprob's SGD reads them.
"""
from typing import Annotated

import torch
from torch import nn

from ..validate import Range

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
            g["lr"] = lr * (norm_bias_lr_scale if g.get("role") == "norm_bias" else 1.0)
            g["weight_decay"] = weight_decay + step_decay * g.get("batch_size", 1024) / 1024 / g["lr"]
        super().__init__(groups, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
