"""Learning-rate schedules (conf/schedule/), stepped once per optimizer step.

Try: deeprob train dataset=synthetic schedule=onecycle
"""
import math
from typing import Annotated

import numpy as np

from torch.optim.lr_scheduler import LambdaLR, OneCycleLR

from ..validate import Range

Warmup = Annotated[float, Range(0, 1, what="a fraction of all steps")]
Divisor = Annotated[float, Range(0, low_open=True)]


def _warmup_then(decay, total_steps: int, warmup: float):
    warm = int(warmup * total_steps)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return decay((step - warm) / max(1, total_steps - warm))

    return factor


def constant(optimizer, total_steps: int, warmup: Warmup = 0.0):
    """Constant learning rate after a linear warmup."""
    return LambdaLR(optimizer, _warmup_then(lambda t: 1.0, total_steps, warmup))


def cosine(optimizer, total_steps: int, warmup: Warmup = 0.0):
    """Linear warmup, then cosine decay to zero: lr·½(1+cos(πt))."""
    return LambdaLR(optimizer, _warmup_then(lambda t: 0.5 * (1 + math.cos(math.pi * min(t, 1.0))), total_steps, warmup))


# OneCycleLR's annealing phase divides by the steps after the warmup: it needs some (warmup < 1)
OneCycleWarmup = Annotated[float, Range(0, 1, high_open=True, what="a fraction of all steps")]


def onecycle(optimizer, total_steps: int, warmup: OneCycleWarmup = 0.25, div: Divisor = 25.0, final_div: Divisor = 1e4):
    """torch's OneCycleLR peaking at the optimizer's lr."""
    peak = [group["lr"] for group in optimizer.param_groups]
    return OneCycleLR(optimizer, max_lr=peak, total_steps=total_steps, pct_start=warmup,
                      div_factor=div, final_div_factor=final_div, cycle_momentum=False)


def linear(optimizer, total_steps: int, warmup: Warmup = 0.23,
           start: Annotated[float, Range(0)] = 0.2, peak: Annotated[float, Range(0, low_open=True)] = 1.0,
           end: Annotated[float, Range(0)] = 0.07):
    """Piecewise linear lr factor: start → peak over the first `warmup` of the steps, then peak → end at the last
    step (Keller Jordan's airbench: 0.2 → 1 over 23 %, then → 0.07), numpy.interp's knots."""
    knots = ([0, int(warmup * total_steps), total_steps], [start, peak, end])
    return LambdaLR(optimizer, lambda step: float(np.interp(step, *knots)))
