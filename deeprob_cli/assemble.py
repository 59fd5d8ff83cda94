"""The one recipe that turns a config into a model: train, eval, init-stats' deep stacks aside, and the lab use it.

    deeprob train model=resnet activation=prelu regularizer=[stochastic_depth] init=kaiming

activation factory → model for the (preprocessed) input shape → regularizers change the model (dropout,
dropconnect, fractional pooling, stochastic depth) → lazily sized parameters (per-channel PReLU α) take their
size from a batch → initialization, whose gain follows the chosen activation. Restoring a checkpoint is the
same call with `init=False`: the weights then come from the checkpoint.
"""
from dataclasses import dataclass

import torch
from torch import nn

from .components.activation import materialize
from .components.regularizer import Regularizers
from .config import build, selected


@dataclass
class Assembly:
    model: nn.Module
    activation: object  # the activation factory: activation() is a fresh module
    regularizers: Regularizers


def build_regularizers(cfg, num_classes: int) -> Regularizers:
    """The selected regularizer options behind their hooks."""
    chosen = [build(node, f"regularizer.{name}") for name, node in selected(cfg, "regularizer").items()]
    return Regularizers(chosen, num_classes)


def assemble(cfg, in_shape, num_classes: int, batch: torch.Tensor | None = None, init: bool = True) -> Assembly:
    """The model of cfg for inputs of in_shape (C,H,W or D); `batch` (preprocessed, on the CPU) sizes lazy
    parameters and feeds data-dependent inits (lsuv); init=False leaves the weights to a checkpoint."""
    activation = build(cfg.activation, "activation")
    regularizers = build_regularizers(cfg, num_classes)
    model = build(cfg.model, "model", in_shape=in_shape, num_classes=num_classes, activation=activation)
    regularizers.change_model(model, activation())
    if batch is not None:
        materialize(model, batch)  # per-channel PReLU: α takes its size from the data
    if init:
        build(cfg.init, "init")(model, activation=activation(), batch=batch)
    return Assembly(model, activation, regularizers)
