"""The training hot path's speed settings: numeric precision (bf16 autocast), memory layout, torch.compile.

    deeprob train trainer.precision=auto trainer.channels_last=auto trainer.compile=false   # the defaults
    deeprob train experiment=fast dataset=image_folder dataset.root=PATH                   # all of them at work

`trainer.precision`: auto = bfloat16 autocast on CUDA and on CPUs with native bf16 arithmetic (AMX or
AVX512-BF16, read from the CPU's flags at run time), float32 elsewhere; bf16 | fp32 force one.
Autocast wraps the forward pass and the loss only; weights, gradients and the optimizer stay float32.
`trainer.channels_last`: auto = NHWC memory layout for convolutional models on CUDA and under bf16 on the
CPU, where oneDNN's bf16 convolutions, batch norm and max-pool ran about 2× faster in it (measured with
benchmarks/bench.py); plain float32 on the CPU stays NCHW (mixed results there).
"""
import contextlib
from pathlib import Path

import torch

from .config import SETTINGS
from .validate import check_value

CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # /proc/cpuinfo flags of CPUs with native bf16 dot products


def cpu_flags(path: str = "/proc/cpuinfo") -> set:
    """The CPU's feature flags (Linux /proc/cpuinfo), empty where that file is missing."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_has_bf16(flags: set | None = None) -> bool:
    """True when the CPU computes bf16 natively (AMX or AVX512-BF16), from its flags or torch's capability."""
    flags = cpu_flags() if flags is None else flags
    if flags:
        return any(f in flags for f in CPU_BF16_FLAGS)
    capability = getattr(torch.backends.cpu, "get_cpu_capability", lambda: "")()
    return capability in ("AVX512_BF16", "AMX")  # non-Linux: torch's own view (no flags file)


def pick_precision(name: str, device: torch.device, flags: set | None = None) -> torch.dtype:
    """trainer.precision → the autocast dtype: bfloat16 or float32 (float32 = autocast off)."""
    check_value("trainer.precision", name, SETTINGS["trainer.precision"])  # (config.check refused it already)
    if name == "auto":
        native = device.type == "cuda" or (device.type == "cpu" and cpu_has_bf16(flags))
        return torch.bfloat16 if native else torch.float32
    return torch.bfloat16 if name == "bf16" else torch.float32


def autocast(device: torch.device, dtype: torch.dtype):
    """torch.autocast to dtype on the device, or a no-op context for float32."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def precision_name(dtype: torch.dtype) -> str:
    return "bf16" if dtype == torch.bfloat16 else "fp32"


def pick_device(name) -> torch.device:
    """auto = the first CUDA device when there is one, else the CPU (the name is checked by config.check_device)."""
    if str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(str(name))


def use_channels_last(setting, model, device: torch.device, dtype: torch.dtype = torch.float32) -> bool:
    """trainer.channels_last → bool: auto = on for a model with convolutions, on CUDA or under bf16 on the CPU."""
    if setting == "auto":
        has_conv = any(isinstance(m, torch.nn.Conv2d) for m in model.modules())
        return has_conv and (device.type == "cuda" or dtype == torch.bfloat16)
    return bool(setting)


class Speed:
    """The run's precision, memory layout and compilation, from trainer.*."""

    def __init__(self, trainer, device: torch.device):
        # the values were checked with the rest of the config (config.SETTINGS)
        self.dtype = pick_precision(trainer.precision, device)
        self.device, self.setting, self.compile = device, trainer.channels_last, trainer.compile
        self.channels_last = False

    def prepare(self, model):
        """The callable that runs the model: in its memory layout, compiled when asked (state stays on model)."""
        self.channels_last = use_channels_last(self.setting, model, self.device, self.dtype)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        return torch.compile(model) if self.compile else model

    def layout(self, x: torch.Tensor) -> torch.Tensor:
        """A batch in the model's memory layout."""
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x

    def autocast(self):
        """Autocast to the run's dtype (a no-op for fp32); wraps forward passes and losses only."""
        return autocast(self.device, self.dtype)

    def wrap(self, model):
        """The model as a module whose forward runs under autocast, for code that calls model(x) itself
        (evaluation): preprocessing outside it stays float32, as in training."""
        return Autocast(model, self)

    def record(self) -> dict:
        """What summary.json says about the speed settings."""
        return {"precision": precision_name(self.dtype), "channels_last": self.channels_last, "compile": self.compile}


def for_eval(model, trainer, device: torch.device):
    """A restored run's model under the run's own precision and layout (`deeprob eval` then scores as training
    did); runs saved before trainer.precision existed are float32."""
    from types import SimpleNamespace

    settings = SimpleNamespace(precision=trainer.get("precision", "fp32"),
                               channels_last=trainer.get("channels_last", False), compile=False)
    speed = Speed(settings, device)
    speed.prepare(model)
    return speed.wrap(model)


class Autocast(torch.nn.Module):
    """model(x) under the run's autocast and memory layout; train()/eval() reach the wrapped model."""

    def __init__(self, model, speed: Speed):
        super().__init__()
        self.model, self.speed = model, speed

    def forward(self, x):
        with self.speed.autocast():
            return self.model(self.speed.layout(x))
