"""TensorBoard logging for a training run: `tensorboard --logdir runs` shows what this writes.

Scalars every step (train/loss) and epoch (train/acc, val/loss, val/acc, lr); at snapshot steps the
histograms of every activation layer's output (forward hooks), of every weight and of its gradient; the
run's hyperparameters for TensorBoard's HParams tab. Hooks only record during a snapshot step, so the
rest of training pays nothing for them.
"""
import torch
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams

METRICS = ("val/acc", "val/loss", "train/acc", "train/loss")


def activation_layers(model, activation):
    """(name, module) of every activation layer: the modules of the chosen activation's class."""
    kind = type(activation())
    return [(name, m) for name, m in model.named_modules() if type(m) is kind]


class Monitor:
    """Writes one run's TensorBoard events; `snapshot()` arms the activation hooks for the next forward."""

    def __init__(self, logdir, model, activation, hist_every: int, purge_step: int | None = None):
        # purge_step: a resumed run's first step; TensorBoard then hides what an interrupted run logged from it on
        self.writer = SummaryWriter(str(logdir), purge_step=purge_step)
        self.model, self.hist_every = model, hist_every
        self.captured, self.armed = {}, False
        for name, module in activation_layers(model, activation):
            module.register_forward_hook(self._hook(name))

    def _hook(self, name):
        def record(module, inputs, output):
            if self.armed:
                self.captured[name] = output.detach()
        return record

    def due(self, step: int, last_of_epoch: bool) -> bool:
        """True for snapshot steps: every hist_every steps and the last step of each epoch (never when 0)."""
        return self.hist_every > 0 and (last_of_epoch or step % self.hist_every == 0)

    def snapshot(self):
        """Record the activations of the next forward pass."""
        self.armed, self.captured = True, {}

    def log_snapshot(self, step: int):
        """Write activation, weight and gradient histograms (call after backward)."""
        self.armed = False
        for name, output in self.captured.items():
            self.writer.add_histogram(f"activation/{name}", output.float().cpu(), step)
        for name, param in self.model.named_parameters():
            self.writer.add_histogram(f"weight/{name}", param.detach().float().cpu(), step)
            if param.grad is not None:
                self.writer.add_histogram(f"grad/{name}", param.grad.float().cpu(), step)
        self.captured = {}

    def scalars(self, values: dict, step: int):
        for tag, value in values.items():
            if value is not None:
                self.writer.add_scalar(tag, float(value), step)

    def step_losses(self, first_step: int, losses):
        """Write train/loss for a run of consecutive steps (one host sync per epoch, not per step)."""
        for i, loss in enumerate(torch.stack(losses).tolist()):
            self.writer.add_scalar("train/loss", loss, first_step + i)

    def hparams(self, values: dict):
        """Declare the run's hyperparameters; TensorBoard reads the METRICS scalars of this run beside them."""
        clean = {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in values.items()}
        for summary in hparams(clean, {m: 0.0 for m in METRICS}):
            self.writer.file_writer.add_summary(summary)

    def close(self):
        self.writer.close()
