"""TensorBoard logging for a training run: `tensorboard --logdir runs` shows what this writes.

Scalars every step (train/loss) and epoch (train/acc, val/loss, val/acc, lr); at snapshot steps the
histograms of every activation layer's output (forward hooks), of every weight and of its gradient; the
run's hyperparameters for TensorBoard's HParams tab. Hooks only record during a snapshot step, so the
rest of training pays nothing for them.

At each snapshot, per activation layer, the scalars that show the lecture's failure modes:
  dead/<layer>       fraction of units (channels of a conv output) whose activation derivative is zero for
                     every example and position of the batch: a dead ReLU never updates
  saturated/<layer>  fraction of outputs in the flat tails (sigmoid and tanh only): saturated units kill the
                     gradient
  preact|act|act_grad/{mean,std}/<layer>  of the pre-activation, the activation and the loss gradient with
                     respect to the activation (zero-centredness, vanishing or exploding signals)
The derivative is computed generically: the layer is re-run on its captured input and autograd gives the
vector-Jacobian product with ones, which for an elementwise activation is f'(x). A gated unit (in_factor 2,
SwiGLU) is not elementwise: each output unit reads one unit of each input half, and it counts as dead when
neither of its inputs receives a gradient for any example.
"""
import torch
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams

HIST_SAMPLES = 1 << 16  # values binned per histogram at most (activation maps hold millions)
METRICS = ("val/acc", "val/loss", "train/acc", "train/loss")
# flat tails of the saturating activations: (class, predicate on the output y)
SATURATION = ((torch.nn.Sigmoid, lambda y: (y < 0.01) | (y > 0.99)),
              (torch.nn.Tanh, lambda y: y.abs() > 0.99))


def activation_layers(model, activation):
    """(name, module) of every activation layer: the modules of the chosen activation's class."""
    sample = activation()
    kinds = {type(sample), getattr(sample, "cls_to_become", None)} - {None}  # a lazy module changes class
    return [(name, m) for name, m in model.named_modules() if type(m) in kinds]


def dead_fraction(module, x: torch.Tensor) -> float:
    """Fraction of the module's output units (dim 1) through which no example of x passes a gradient."""
    with torch.enable_grad():
        x = x.detach().clone().requires_grad_()
        (slope,) = torch.autograd.grad(module(x.clone()).sum(), x)
    passes = slope.ne(0).transpose(0, 1).reshape(slope.shape[1], -1).any(1)  # per input unit
    k = getattr(module, "in_factor", 1)
    dead = ~passes.reshape(k, -1).any(0)  # an output unit is dead when none of its k input units passes
    return dead.float().mean().item()


def saturated_fraction(module, y: torch.Tensor):
    """Fraction of outputs in the flat tails, or None for an activation that does not saturate."""
    for kind, tails in SATURATION:
        if isinstance(module, kind):
            return tails(y).float().mean().item()
    return None


class Monitor:
    """Writes one run's TensorBoard events; `snapshot()` arms the activation hooks for the next forward."""

    def __init__(self, logdir, model, activation, hist_every: int, purge_step: int | None = None):
        # purge_step: a resumed run's first step; TensorBoard then hides what an interrupted run logged from it on
        self.writer = SummaryWriter(str(logdir), purge_step=purge_step)
        self.model, self.hist_every = model, hist_every
        self.captured, self.armed = {}, False
        self.layers = dict(activation_layers(model, activation))
        for name, module in self.layers.items():
            module.register_forward_hook(self._hook(name))

    def _hook(self, name):
        def record(module, inputs, output):
            if not self.armed:
                return
            entry = self.captured[name] = {"input": inputs[0].detach(), "output": output.detach()}
            if output.requires_grad:
                output.register_hook(lambda grad: entry.__setitem__("grad", grad.detach()))
        return record

    def due(self, step: int, last_of_epoch: bool) -> bool:
        """True for snapshot steps: every hist_every steps and the last step of each epoch (never when 0)."""
        return self.hist_every > 0 and (last_of_epoch or step % self.hist_every == 0)

    def snapshot(self):
        """Record the activations (and, at backward, their gradients) of the next forward pass."""
        self.armed, self.captured = True, {}

    def log_snapshot(self, step: int):
        """Write activation, weight and gradient histograms and the per-layer diagnostics (call after backward)."""
        self.armed = False
        for name, entry in self.captured.items():
            self.histogram(f"activation/{name}", entry["output"], step)
            self.scalars(self.diagnose(name, entry), step)
        for name, param in self.model.named_parameters():
            self.histogram(f"weight/{name}", param.detach(), step)
            if param.grad is not None:
                self.histogram(f"grad/{name}", param.grad, step)
        self.captured = {}

    def histogram(self, tag: str, values: torch.Tensor, step: int):
        """A histogram of the finite values (a diverged run has inf/nan, which TensorBoard cannot bin)."""
        values = values.detach().flatten()
        if values.numel() > HIST_SAMPLES:  # a strided sample: the same histogram at a fraction of the binning cost
            values = values[::-(-values.numel() // HIST_SAMPLES)]
        values = values.float()
        values = values[torch.isfinite(values)].cpu()
        if values.numel():
            self.writer.add_histogram(tag, values, step)

    def diagnose(self, name: str, entry: dict) -> dict:
        """The dead/saturated fractions and mean/std scalars of one captured activation layer."""
        module, x, y = self.layers[name], entry["input"].float(), entry["output"].float()
        values = {f"dead/{name}": dead_fraction(module, x), f"saturated/{name}": saturated_fraction(module, y)}
        for kind, t in (("preact", x), ("act", y), ("act_grad", entry.get("grad"))):
            if t is not None:
                values[f"{kind}/mean/{name}"], values[f"{kind}/std/{name}"] = t.float().mean(), t.float().std()
        return values

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
