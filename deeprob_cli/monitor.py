"""TensorBoard logging for a training run: `deeprob train ...`, then `tensorboard --logdir runs` shows what
this writes.

One writer per split, TensorBoard's own convention (Keras' callback does the same): RUN/train holds `loss` (every
step) and `acc` (every epoch), RUN/val holds `loss` and `acc` (every epoch), RUN/test holds `acc` (at the end).
The same tag in two runs is one chart with a line per split, so colour and legend name the split. The run folder
itself (RUN) holds the rest: lr per epoch; at snapshot steps the histograms of every activation layer's output
(forward hooks), of every weight and of its gradient (hooks only record during a snapshot step, so the rest of
training pays nothing for them); the HParams session, the Text tab and the final/<key> numbers.
What a user sees first:
- Custom Scalars tab: a layout whose first category puts train and val loss on one chart and train/val (and
  the final test) accuracy on another; the per-layer diagnostics follow, one chart per kind with a line per
  layer.
- HParams tab: the run's choices at the start; at the end (`finish`) the real status (completed, or diverged
  and failed as a failure) and the summary's final numbers as metrics (final/val_acc, final/test_acc, ...),
  declared only where the run can have them (no test_acc without a test split, no *_tta without tta=).
- Text tab: the composed config and the command line (`text`), and the final status with its reason.

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
import json
import math
import time
from pathlib import Path

import torch
from google.protobuf import struct_pb2
from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
from tensorboard.util.tensor_util import make_tensor_proto
from torch.utils.tensorboard import SummaryWriter

HIST_SAMPLES = 1 << 16  # values binned per histogram at most (activation maps hold millions)
# summary.json numbers written at the end as final/<key> scalars: the HParams tab's metric columns
FINAL = ("val_acc", "test_acc", "train_loss", "train_acc", "val_loss", "val_acc_tta", "test_acc_tta")
SPLITS = ("train", "val", "test")  # a tag "val/acc" is written as "acc" by the RUN/val writer
# where to look, as printed by a run and the README: TensorBoard's default smoothing (0.6, an exponential moving
# average) drags a curve of a few epoch points far from the measured values (val accuracy read 0.46 for 0.50 at
# 4 epochs): smoothing 0 shows each epoch's value as measured
LINK = "http://localhost:6006/#custom_scalars&_smoothingWeight=0"
# steps per epoch, for `deeprob compare` to place epochs exactly (also for a run that never ended an epoch);
# a tensor of a plugin of our own, so no TensorBoard dashboard shows it
EPOCH_LENGTH = "deeprob/steps_per_epoch"
# run status → HParams session status. An interrupted run writes no end record: TensorBoard keeps the first
# one a run folder holds, so the resumed run's end decides.
STATUS = {"completed": api_pb2.STATUS_SUCCESS, "diverged": api_pb2.STATUS_FAILURE, "failed": api_pb2.STATUS_FAILURE}
# the Custom Scalars layout: {category: {chart title: tag regexes}}, in display order; loss and accuracy first
LAYOUT = {
    "loss and accuracy": {
        "loss (train per step, val per epoch)": [r"^loss$"],
        "accuracy (train, val per epoch; test at the end)": [r"^acc$"],
        "learning rate": [r"^lr$"],
    },
    "dead and saturated units, per layer": {
        "dead: fraction of units no example passes a gradient through": [r"^dead/"],
        "saturated: fraction of outputs in the flat tails (sigmoid, tanh)": [r"^saturated/"],
    },
    "activations, per layer": {"activation mean": [r"^act/mean/"], "activation std": [r"^act/std/"]},
    "gradients w.r.t. the activations, per layer": {"mean": [r"^act_grad/mean/"], "std": [r"^act_grad/std/"]},
    "pre-activations, per layer": {"mean": [r"^preact/mean/"], "std": [r"^preact/std/"]},
}
# flat tails of the saturating activations: (class, predicate on the output y)
SATURATION = ((torch.nn.Sigmoid, lambda y: (y < 0.01) | (y > 0.99)),
              (torch.nn.Tanh, lambda y: y.abs() > 0.99))


def final_metrics(val: bool, test: bool, tta: bool) -> list:
    """The FINAL keys a run can have: none of a missing split, no *_tta without test-time augmentation (where
    they would repeat the plain numbers). TensorBoard's parallel coordinates draw nothing for a declared metric
    that no run has."""
    return [k for k in FINAL if (val or not k.startswith("val_")) and (test or not k.startswith("test_"))
            and (tta or not k.endswith("_tta"))]


def overridden_numbers(overrides, cfg) -> dict:
    """{key: value} of the command line's overrides (`optim.weight_decay=5e-4`) whose composed value is a number:
    logged as HParams columns beside the choices, so a run's changed setting is visible there."""
    found = {}
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        value = _select(cfg, key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            found[key] = value
    return found


def _select(cfg, key):
    from omegaconf import OmegaConf

    try:
        return OmegaConf.select(cfg, key, default=None)
    except Exception:  # a key that is not a plain path (a Hydra-only override)
        return None


def wait_past_event_files(logdir: Path):
    """Wait, if need be, into a second later than any event file under logdir (the run's and its splits') was
    created in. TensorBoard reads a run's event files in name order and a name starts with its creation second;
    a resumed run's file created in the same second as the interrupted one's would be ordered by process id, and
    read first half the time, its purge then undoing the wrong file."""
    folders = [Path(logdir), *(Path(logdir) / split for split in SPLITS)]
    names = [p.name.split(".") for folder in folders for p in folder.glob("events.out.tfevents.*")]
    stamps = [int(n[3]) for n in names if len(n) > 3 and n[3].isdigit()]
    if stamps and max(stamps) + 1 > time.time():
        time.sleep(max(stamps) + 1 - time.time())


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
        # purge_step: a resumed run's first step; TensorBoard then hides what an interrupted run logged from it on,
        # in the run and in each split. A fresh run's splits purge from step 0: what a start that was thrown away
        # left there (Run.start_over removes the run folder's own event files only) is hidden too.
        wait_past_event_files(logdir)
        self.logdir, self.purge_step = Path(logdir), purge_step or 0
        self.writer = SummaryWriter(str(logdir), purge_step=purge_step)
        self.splits = {}  # split → its writer, made when the split is first written to
        self.model, self.hist_every = model, hist_every
        self.captured, self.armed = {}, False
        self.layers = dict(activation_layers(model, activation))
        for name, module in self.layers.items():
            module.register_forward_hook(self._hook(name))
        self.writer.add_custom_scalars({category: {title: ["Multiline", tags] for title, tags in charts.items()}
                                        for category, charts in LAYOUT.items()})

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

    def split(self, name: str) -> SummaryWriter:
        """The writer of one split (RUN/<name>), made at its first use."""
        if name not in self.splits:
            self.splits[name] = SummaryWriter(str(self.logdir / name), purge_step=self.purge_step)
        return self.splits[name]

    def scalars(self, values: dict, step: int):
        """Write scalars; a tag "<split>/<name>" (train/acc, val/loss) goes to that split's writer as <name>."""
        for tag, value in values.items():
            if value is not None:
                split, _, name = tag.partition("/")
                writer = self.split(split) if split in SPLITS else self.writer
                writer.add_scalar(name if split in SPLITS else tag, float(value), step)

    def step_losses(self, first_step: int, losses):
        """Write the training loss of a run of consecutive steps (one host sync for all of them, not one per step)."""
        for i, loss in enumerate(torch.stack(losses).tolist()):
            self.split("train").add_scalar("loss", loss, first_step + i)

    def hparams(self, values: dict, metrics=FINAL, steps_per_epoch: int | None = None, varied=()):
        """Declare the run's hyperparameters and the final/<key> metrics it can have (final_metrics); `finish`
        writes the session's end. steps_per_epoch is recorded for `deeprob compare` (EPOCH_LENGTH). The keys in
        `varied` (what a sweep varies, else what the user set) are marked as differing, and TensorBoard's HParams
        tab orders such columns first; a None value (no experiment preset) is left out."""
        values = {k: v for k, v in values.items() if v is not None}
        kinds = {bool: ("bool_value", api_pb2.DATA_TYPE_BOOL), int: ("number_value", api_pb2.DATA_TYPE_FLOAT64),
                 float: ("number_value", api_pb2.DATA_TYPE_FLOAT64), str: ("string_value", api_pb2.DATA_TYPE_STRING)}
        clean = {k: (v if type(v) in kinds else str(v)) for k, v in values.items()}
        experiment = api_pb2.Experiment(
            hparam_infos=[api_pb2.HParamInfo(name=k, type=kinds[type(v)][1], differs=k in varied)
                          for k, v in clean.items()],
            metric_infos=[api_pb2.MetricInfo(name=api_pb2.MetricName(tag=f"final/{key}"), display_name=key)
                          for key in metrics])
        start = plugin_data_pb2.SessionStartInfo(start_time_secs=time.time())
        for k, v in clean.items():
            start.hparams[k].CopyFrom(struct_pb2.Value(**{kinds[type(v)][0]: v}))
        self._hparams_record(metadata.EXPERIMENT_TAG, experiment=experiment)
        self._hparams_record(metadata.SESSION_START_INFO_TAG, session_start_info=start)
        if steps_per_epoch:
            meta = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(
                plugin_name="deeprob", content=json.dumps({"steps_per_epoch": steps_per_epoch}).encode()))
            self.split("train").file_writer.add_summary(Summary(value=[Summary.Value(
                tag=EPOCH_LENGTH, metadata=meta, tensor=make_tensor_proto(steps_per_epoch))]), 0)

    def _hparams_record(self, tag: str, **data):
        # what tensorboard.plugins.hparams.summary writes, built without its TensorFlow import
        meta = metadata.create_summary_metadata(plugin_data_pb2.HParamsPluginData(**data))
        self.writer.file_writer.add_summary(Summary(value=[Summary.Value(tag=tag, metadata=meta)]))

    def text(self, config_yaml: str, command: str):
        """The composed config and the command line, for TensorBoard's Text tab (markdown code blocks)."""
        self.writer.add_text("config", f"```yaml\n{config_yaml.rstrip()}\n```", 0)
        self.writer.add_text("command", f"```\n{command}\n```", 0)

    def finish(self, status: str, metrics: dict, step: int = 0):
        """End the run in TensorBoard: final/<key> scalars from metrics (summary.json's keys; *_tta only under a
        tta= option), the test accuracy as RUN/test's acc beside the last epoch's, the status (and
        metrics['error'], the reason) in the Text tab, the HParams session's end with that status; then close."""
        tta = (metrics.get("choices") or {}).get("tta", "none") != "none"
        for key in final_metrics(val=True, test=True, tta=tta):
            value = metrics.get(key)
            if isinstance(value, (int, float)) and math.isfinite(value):
                self.writer.add_scalar(f"final/{key}", float(value), step)
        if isinstance(metrics.get("test_acc"), (int, float)) and step > 0:
            self.scalars({"test/acc": metrics["test_acc"]}, step - 1)  # at the last epoch's step
        reason = metrics.get("error")
        self.writer.add_text("status", f"**{status}** after {step} steps" + (f": {reason}" if reason else ""), step)
        if status in STATUS:
            end = plugin_data_pb2.SessionEndInfo(status=STATUS[status], end_time_secs=time.time())
            self._hparams_record(metadata.SESSION_END_INFO_TAG, session_end_info=end)
        self.close()

    def flush(self):
        for writer in (self.writer, *self.splits.values()):
            writer.flush()

    def close(self):
        for writer in (self.writer, *self.splits.values()):
            writer.close()
