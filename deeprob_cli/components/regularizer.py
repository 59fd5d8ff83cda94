"""Regularizers (conf/regularizer/, multi-select). Try: deeprob train dataset=synthetic regularizer=[l2]

A regularizer may implement any of these hooks, all optional; train.py calls each one that exists:
  penalty(model) -> tensor (or 0.0) added to the loss
  after_step(model, lr)  after optimizer.step()
"""
import torch
from torch import nn

NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def decayed_weights(model: nn.Module):
    """The weights that weight decay applies to: every parameter except biases and normalization parameters."""
    for module in model.modules():
        if isinstance(module, NORM_TYPES):
            continue
        for name, param in module.named_parameters(recurse=False):
            if name != "bias" and param.requires_grad:
                yield param


class L2:
    """λ·ΣW² (coupled, gradient 2λW) or, decoupled, W ← W − lr·λ·W after each step (Loshchilov & Hutter)."""

    def __init__(self, strength: float = 2.5e-4, decoupled: bool = False):
        self.strength, self.decoupled = strength, decoupled

    def penalty(self, model):
        if self.decoupled:
            return 0.0
        return self.strength * sum(w.pow(2).sum() for w in decayed_weights(model))

    @torch.no_grad()
    def after_step(self, model, lr: float):
        if self.decoupled:
            for w in decayed_weights(model):
                w.mul_(1 - lr * self.strength)
