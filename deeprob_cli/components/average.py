"""Weight averaging (conf/average/): the model that is evaluated, checkpointed and scored is an average of the
trained weights. Try: deeprob train dataset=synthetic average=ema   or   average=lookahead average.every=5

Every option is a factory `option(model, total_steps)` → an averager with fixed hooks, which train.py calls:
`update(step)` after each optimizer step (step counts from 1), `.model` the module to evaluate, and
`state_dict()`/`load_state_dict()` for the checkpoint. An option that would not update once in the run's steps
is refused before the first step (one line): it would ship the initial weights as the trained model. The checkpoint's "model" entry holds the averaged
weights (what `deeprob eval` scores); the trained weights, which a resumed run continues from, travel in the
averager's own state. Buffers (batch-norm running statistics) are averaged with the weights, so the averaged
model's statistics match its weights.
"""
import copy
import math
from typing import Annotated

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ..validate import Range


class Plain:
    """No averaging: the trained model is the evaluated one."""

    def __init__(self, model: nn.Module, total_steps: int = 0):
        self.model = model

    def update(self, step: int):
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict):
        pass


def none(model: nn.Module, total_steps: int = 0) -> Plain:
    """average=none."""
    return Plain(model, total_steps)


class EMA:
    """Exponential moving average of the weights (Polyak & Juditsky 1992; as used by e.g. Tan & Le 2019):
    W̄ ← decay·W̄ + (1 − decay)·W every `every` steps, torch's AveragedModel with get_ema_multi_avg_fn (the
    first update copies W). `start` skips that fraction of the run's steps first (early weights are far off)."""

    def __init__(self, model: nn.Module, total_steps: int, decay: float = 0.99, every: int = 1, start: float = 0.0):
        self.trained, self.every, self.first = model, every, int(start * total_steps)
        self.averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
        self.model = self.averaged.module

    @torch.no_grad()
    def update(self, step: int):
        if step > self.first and step % self.every == 0:
            self.averaged.update_parameters(self.trained)

    def state_dict(self) -> dict:
        return {"trained": self.trained.state_dict(), "n_averaged": self.averaged.n_averaged.clone()}

    def load_state_dict(self, state: dict):
        self.trained.load_state_dict(state["trained"])
        self.averaged.n_averaged.copy_(state["n_averaged"])


def ema(model: nn.Module, total_steps: int, decay: Annotated[float, Range(0, 1)] = 0.99,
        every: Annotated[int, Range(1, integer=True)] = 1, start: Annotated[float, Range(0, 1)] = 0.0) -> EMA:
    """average=ema."""
    first = int(start * total_steps)
    if total_steps and total_steps // every - first // every == 0:  # no update step in (first, total]: untrained
        if first >= total_steps:
            raise ValueError(f"start: {start} leaves none of the run's {total_steps} steps to average, so the "
                             f"initial weights would be evaluated and saved; use average.start < 1 (e.g. 0.5)")
        raise ValueError(f"every: {every} gives no update in the run's steps {first + 1}..{total_steps} (its last "
                         f"step is {total_steps}), so the initial weights would be evaluated and saved; use "
                         f"average.every ≤ {total_steps - first}, or more trainer.epochs")
    return EMA(model, total_steps, decay, every, start)


class Lookahead:
    """Lookahead (Zhang et al. 2019): every k steps the slow weights move toward the fast ones,
    slow ← slow + α(fast − slow), and training continues from them, fast ← slow. The slow weights are the
    evaluated model. With `ramp` the step size follows the run, α_t = 1 − ramp^k·(t/T)³ (Keller Jordan's
    airbench, ramp = 0.95): the slow weights follow the fast ones closely early and average strongly late;
    after the last step the fast weights take the slow ones (also off the k-step grid), so the trained and
    evaluated models agree at the end."""

    def __init__(self, model: nn.Module, total_steps: int, every: int = 5, alpha: float = 0.5,
                 ramp: float | None = None):
        self.trained, self.total, self.every, self.alpha, self.ramp = model, total_steps, every, alpha, ramp
        self.model = copy.deepcopy(model)
        for p in self.model.parameters():
            p.requires_grad_(False)

    def step_size(self, step: int) -> float:
        """α at step t (of T)."""
        if self.ramp is None:
            return self.alpha
        return 1 - self.ramp ** self.every * (min(step, self.total) / max(1, self.total)) ** 3

    @torch.no_grad()
    def update(self, step: int):
        if step % self.every and step < self.total:
            return
        alpha = 0.0 if step % self.every else self.step_size(step)  # the last step: fast ← slow only
        slow = [t for t in self.model.state_dict().values() if t.is_floating_point()]
        fast = [t for t in self.trained.state_dict().values() if t.is_floating_point()]
        torch._foreach_lerp_(slow, fast, alpha)  # slow + α(fast − slow)
        for s, f in zip(slow, fast):
            f.copy_(s)

    def state_dict(self) -> dict:
        return {"trained": self.trained.state_dict()}

    def load_state_dict(self, state: dict):
        self.trained.load_state_dict(state["trained"])


def lookahead(model: nn.Module, total_steps: int, every: Annotated[int, Range(1, integer=True)] = 5,
              alpha: Annotated[float, Range(0, 1, low_open=True)] = 0.5,
              ramp: Annotated[float | None, Range(0, 1, nullable=True)] = None) -> Lookahead:
    """average=lookahead."""
    if total_steps and every > total_steps:  # the slow weights would never move, and the last step's fast ← slow
        raise ValueError(f"every: {every} is past the run's last step {total_steps}, so the slow (initial) weights "
                         f"would be evaluated and would replace the trained ones; use average.every ≤ {total_steps}, "
                         f"or more trainer.epochs")
    return Lookahead(model, total_steps, every, alpha, ramp)
