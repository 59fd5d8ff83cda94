"""Speed settings (deeprob_cli/speed.py) and the experiment presets (conf/experiment/)."""
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from conftest import FAST, make_cfg, summary
from deeprob_cli import UserError
from deeprob_cli.config import CONFIG_DIR, build, selected
from deeprob_cli.models import ConvNet
from deeprob_cli.speed import Speed, cpu_flags, cpu_has_bf16, pick_precision
from deeprob_cli.train import train

CPU = torch.device("cpu")
PRESETS = sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("fast*.yaml"))  # the speed presets (lab_* are deeprob lab's)


# ---------------------------------------------------------------- precision detection

@pytest.mark.parametrize("flags, expected", [({"avx2", "fma"}, torch.float32),
                                             ({"avx512f", "avx512_bf16"}, torch.bfloat16),
                                             ({"amx_bf16", "amx_tile"}, torch.bfloat16)])
def test_auto_precision_follows_the_cpu_flags(flags, expected):
    assert pick_precision("auto", CPU, flags) == expected


def test_forced_precision_ignores_the_hardware():
    assert pick_precision("bf16", CPU, {"avx2"}) == torch.bfloat16
    assert pick_precision("fp32", CPU, {"amx_bf16"}) == torch.float32
    assert pick_precision("auto", torch.device("cuda"), set()) == torch.bfloat16  # no CUDA call needed


def test_cpu_flags_read_from_a_cpuinfo_file(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    assert cpu_flags(str(info)) == {"fpu", "avx512f", "avx512_bf16"}
    assert cpu_flags(str(tmp_path / "missing")) == set()
    assert cpu_has_bf16({"fpu", "avx512_bf16"}) and not cpu_has_bf16({"fpu", "avx2"})


@pytest.mark.parametrize("key, value", [("precision", "fp16"), ("channels_last", "yes"), ("compile", "maybe")])
def test_bad_speed_setting_is_one_line_naming_the_key(key, value):
    from deeprob_cli.config import check

    with pytest.raises(UserError, match=rf"^trainer.{key}: '{value}' is not allowed; expected (one of|true or false)"):
        check(make_cfg(f"trainer.{key}={value}"))


# ---------------------------------------------------------------- autocast and memory layout

def test_autocast_runs_the_convolutions_in_bf16_and_the_weights_stay_fp32():
    cfg = make_cfg("trainer.precision=bf16", "trainer.channels_last=auto").trainer
    speed = Speed(cfg, CPU)
    model = ConvNet((3, 8, 8), 10, torch.nn.ReLU, widths=(4, 8))
    forward = speed.prepare(model)
    assert speed.channels_last  # auto: conv model under bf16
    with speed.autocast():
        logits = forward(speed.layout(torch.rand(4, 3, 8, 8)))
    assert logits.dtype == torch.bfloat16
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert model.conv1_1.weight.is_contiguous(memory_format=torch.channels_last)


def test_wrapped_model_evaluates_under_autocast_and_follows_eval_mode():
    speed = Speed(make_cfg("trainer.precision=bf16").trainer, CPU)
    model = ConvNet((3, 8, 8), 10, torch.nn.ReLU, widths=(4,))
    speed.prepare(model)
    wrapped = speed.wrap(model)
    wrapped.eval()
    assert not model.training
    x = torch.rand(2, 3, 8, 8)
    assert wrapped(x).dtype == torch.bfloat16 and model(x).dtype == torch.float32  # outside: float32 again


def test_fp32_autocast_is_a_no_op_and_plain_cpu_keeps_nchw():
    speed = Speed(make_cfg("trainer.precision=fp32").trainer, CPU)
    model = ConvNet((3, 8, 8), 10, torch.nn.ReLU, widths=(4,))
    speed.prepare(model)
    assert not speed.channels_last
    with speed.autocast():
        assert model(torch.rand(2, 3, 8, 8)).dtype == torch.float32


@pytest.mark.parametrize("precision, tol", [("fp32", 1e-5), ("bf16", 5e-2)])
def test_channels_last_gives_the_same_outputs_and_gradients(precision, tol):
    """Through Speed (what train.py and eval use): with trainer.channels_last=true the weights and the batch the
    first convolution sees are NHWC, and outputs and gradients equal the NCHW run's within the dtype's rounding."""
    x, y = torch.rand(8, 3, 16, 16), torch.randint(0, 10, (8,), generator=torch.Generator().manual_seed(1))
    results = []
    for setting in (False, True):
        torch.manual_seed(0)
        model = ConvNet((3, 16, 16), 10, torch.nn.ReLU, widths=(8, 16), pool="first")
        speed = Speed(make_cfg(f"trainer.precision={precision}", f"trainer.channels_last={setting}").trainer, CPU)
        net = speed.prepare(model)
        seen = []  # the memory format of each batch that reaches the first convolution
        model.conv1_1.register_forward_pre_hook(
            lambda m, args: seen.append(args[0].is_contiguous(memory_format=torch.channels_last)))
        with speed.autocast():  # a training step, as train_step runs it
            logits = net(speed.layout(x))
            loss = F.cross_entropy(logits, y)
        loss.backward()
        wrapped = speed.wrap(model).eval()  # evaluation: layout and autocast inside the wrapper
        with torch.no_grad():
            evaluated = wrapped(x)
        assert speed.channels_last is setting and seen == [setting, setting]
        assert model.conv1_1.weight.is_contiguous(memory_format=torch.channels_last) is setting
        assert logits.dtype == evaluated.dtype == (torch.bfloat16 if precision == "bf16" else torch.float32)
        results.append((logits.float(), evaluated.float(), model.conv1_1.weight.grad.clone()))
    (a, ea, ga), (b, eb, gb) = results
    assert torch.allclose(a, b, atol=tol, rtol=tol) and torch.allclose(ea, eb, atol=tol, rtol=tol)
    assert torch.allclose(ga, gb, atol=tol * ga.abs().max().item(), rtol=tol)


def test_pool_first_halves_the_resolution_after_each_stage_first_conv():
    model = ConvNet((3, 16, 16), 10, torch.nn.ReLU, widths=(4, 8), convs_per_stage=2, pool="first")
    names = [n for n, _ in model.named_children()]
    assert names.index("pool1") == names.index("act1_1") + 1 and names.index("pool2") == names.index("act2_1") + 1
    assert model(torch.rand(2, 3, 16, 16)).shape == (2, 10)
    with pytest.raises(UserError, match="^model.pool: 'middle' is not allowed; expected one of last, first$"):
        build(make_cfg("model=convnet", "model.pool=middle").model, "model", in_shape=(3, 16, 16), num_classes=10,
              activation=torch.nn.ReLU)


def train_in_process(out: Path, *overrides) -> dict:
    """train.py's train() on the composed config, in this process (no interpreter start-up)."""
    train(make_cfg(*overrides), out, choices={}, sweep=True)
    return summary(out)


def test_bf16_run_trains_with_finite_loss_and_records_its_precision(tmp_path):
    s = train_in_process(tmp_path, *FAST, "trainer.precision=bf16", "trainer.epochs=2", "log.hist_every=0")
    assert s["status"] == "completed" and s["precision"] == "bf16" and s["channels_last"] is True
    assert torch.isfinite(torch.tensor(s["train_loss"])) and s["val_acc"] > 0.5  # synthetic classes are separable


@pytest.mark.slow
def test_compiled_run_computes_what_the_eager_run_does(tmp_path):
    """trainer.compile=true: torch.compile (inductor) really traces the model, and the run's numbers match the
    eager run's to float32 rounding (fused kernels reorder sums). About half a minute of compiling."""
    import shutil

    import torch._dynamo
    from torch._dynamo.utils import counters

    if not any(shutil.which(cc) for cc in ("g++", "c++", "clang++")):
        pytest.skip("torch.compile's inductor backend needs a C++ compiler on the CPU; none is installed")
    common = [*FAST, "trainer.precision=fp32", "log.hist_every=0"]
    eager = train_in_process(tmp_path / "eager", *common)
    torch._dynamo.reset()
    counters.clear()
    compiled = train_in_process(tmp_path / "compiled", *common, "trainer.compile=true")
    assert eager["compile"] is False and compiled["compile"] is True
    assert counters["stats"]["unique_graphs"] >= 1  # a graph was captured: the step ran the compiled module
    assert compiled["steps"] == eager["steps"]
    for key in ("train_loss", "val_loss"):
        assert compiled[key] == pytest.approx(eager[key], rel=1e-3), key
    assert abs(compiled["val_acc"] - eager["val_acc"]) <= 2 / 256  # at most two of 256 predictions flip


# ---------------------------------------------------------------- histogram sampling (monitor.HIST_SAMPLES)

def test_histograms_bin_an_even_sample_of_a_large_tensor_and_all_of_a_small_one(tmp_path):
    """A tensor over HIST_SAMPLES values is binned from an evenly strided sample: at most HIST_SAMPLES values, more
    than half of them, spanning the whole range with the full tensor's mean; a smaller one is binned whole
    (non-finite values dropped). Read back from the event file as TensorBoard shows it."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from deeprob_cli.monitor import HIST_SAMPLES, Monitor

    n = 3 * HIST_SAMPLES + 6
    ramp = torch.linspace(-3.0, 5.0, n)  # sorted: a sample of the first (or last) values would miss one end
    small = torch.randn(1000, generator=torch.Generator().manual_seed(0))
    small[7], small[8] = float("inf"), float("nan")
    monitor = Monitor(tmp_path, torch.nn.Linear(1, 1), torch.nn.ReLU, hist_every=0)
    monitor.histogram("ramp", ramp.reshape(-1, 6), 0)  # any shape: flattened first
    monitor.histogram("small", small, 0)
    monitor.close()
    acc = EventAccumulator(str(tmp_path), size_guidance={"histograms": 0})
    acc.Reload()
    big, whole = acc.Histograms("ramp")[0].histogram_value, acc.Histograms("small")[0].histogram_value

    spacing = 8.0 / (n - 1)  # between neighbouring ramp values
    assert HIST_SAMPLES // 2 < big.num <= HIST_SAMPLES
    assert big.min == pytest.approx(-3.0) and 5.0 - big.max <= (n / big.num) * spacing + 1e-6  # the whole range
    assert big.sum / big.num == pytest.approx(ramp.mean().item(), abs=(n / big.num) * spacing)
    finite = small[torch.isfinite(small)]
    assert whole.num == finite.numel() == 998
    assert whole.min == pytest.approx(finite.min().item()) and whole.max == pytest.approx(finite.max().item())
    assert whole.sum == pytest.approx(finite.sum().item(), abs=1e-3)


# ---------------------------------------------------------------- experiment presets

def test_fast_sgd_preset_chooses_the_groups_it_names():
    cfg = make_cfg("experiment=fast_sgd")
    assert cfg.preprocess._target_.endswith("PatchWhiten") and cfg.model.pool == "first"
    assert list(cfg.augment) == ["flip", "crop"]
    assert list(cfg.regularizer) == ["label_smoothing"] and cfg.optim.step_decay > 0  # decay of every parameter
    assert cfg.tta._target_.endswith("FlipTranslate") and cfg.schedule._target_.endswith("linear")
    assert cfg.average._target_.endswith("lookahead") and cfg.augment.flip.mode == "alternate"
    assert cfg.optim.nesterov is True and cfg.trainer.precision == "auto" and cfg.trainer.batch_size == 1024


def test_fast_preset_is_fast_sgd_with_the_muon_records_changes():
    """experiment=fast: experiment=fast_sgd's network, data path and TTA; optim=muon at batch 2000 for 8 epochs,
    lr linearly to 0 without warmup, no averaging (airbench94_muon)."""
    new, old = make_cfg("experiment=fast"), make_cfg("experiment=fast_sgd")
    for key in ("model", "init", "preprocess", "augment", "regularizer", "tta", "activation", "log"):
        assert new[key] == old[key], key
    assert new.optim._target_.endswith("optim.Muon") and new.optim.lr == 0.24 and new.optim.momentum == 0.6
    assert new.trainer.batch_size == 2000 and new.trainer.epochs == 8 and new.average._target_.endswith("none")
    assert (new.schedule.warmup, new.schedule.start, new.schedule.peak, new.schedule.end) == (0, 1, 1, 0)


def test_command_line_overrides_win_over_the_preset():
    preset = make_cfg("experiment=fast")
    cfg = make_cfg("experiment=fast", "optim.lr=0.01", "trainer.epochs=3", "augment=[flip]", "tta=none")
    assert preset.optim.lr != 0.01 and cfg.optim.lr == 0.01 and cfg.trainer.epochs == 3
    assert list(selected(cfg, "augment")) == ["flip"] and cfg.tta._target_.endswith("Identity")
    assert list(selected(make_cfg("experiment=fast", "augment=[crop]", "regularizer=none"), "augment")) == ["crop"]


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_trains_on_synthetic_data_without_validation(tmp_path, preset):
    """Each preset, shrunk to a few steps: composes, trains, and with val_size=0 still writes summary.json."""
    s = train_in_process(tmp_path, f"experiment={preset}", "dataset=synthetic", "dataset.val_size=0",
                         "dataset.num_train=256", "trainer.epochs=1", "trainer.batch_size=64", "model.widths=[8,16,16]",
                         *(["average.every=2"] if preset != "fast" else []))  # 4 steps: a preset's lookahead
    # every=5 would never update (refused); experiment=fast (Muon) averages nothing
    assert s["status"] == "completed" and s["val_acc"] is None and s["val_acc_tta"] is None and s["steps"] == 4


# ---------------------------------------------------------------- start-up

def test_cfg_job_answers_without_importing_torch(tmp_path):
    """`deeprob train experiment=fast --cfg job` prints the preset's values and never imports torch."""
    import subprocess
    import sys

    from conftest import REPO
    from deeprob_cli import launch as show

    assert show.CONFIG_DIR == CONFIG_DIR
    assert show.is_query(["a=1", "--cfg", "job"]) and not show.is_query(["trainer.epochs=1"])
    code = ("import sys; sys.argv = ['deeprob', 'train', 'experiment=fast', 'optim.lr=0.3', '--cfg', 'job']\n"
            "from deeprob_cli.__main__ import main\nmain()\nprint('torch imported:', 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}).stdout
    assert "pool: first" in out and "lr: 0.3" in out and "torch imported: False" in out
