"""Monitor diagnostics: dead and saturated units, mean/std of pre-activation, activation and its gradient."""
import math

import pytest
import torch
from torch import nn

from conftest import FAST, read_events, run_cli, run_dirs, summary
from deeprob_cli.components.activation import LeakyReLU, PReLU, SwiGLU, materialize
from deeprob_cli.monitor import Monitor, dead_fraction, saturated_fraction


def probe(activation, bias, weight=0.0, in_features=4, width=6):
    """Linear(in, width·k) → activation → head, with every pre-activation set by weight and bias."""
    k = getattr(activation(), "in_factor", 1)
    model = nn.Sequential()
    model.add_module("fc1", nn.Linear(in_features, width * k))
    model.add_module("act1", activation())
    model.add_module("head", nn.Linear(width, 3))
    with torch.no_grad():
        model.fc1.weight.fill_(weight)
        model.fc1.bias.copy_(torch.as_tensor(bias, dtype=torch.float32).expand(width * k))
    return model


def snapshot(model, activation, logdir, x, step=0):
    """One monitored training step; returns the diagnostics written and the captured tensors."""
    monitor = Monitor(logdir, model, activation, hist_every=1)
    monitor.snapshot()
    out = model(x)
    nn.functional.cross_entropy(out, torch.zeros(len(x), dtype=torch.long)).backward()
    captured = dict(monitor.captured)
    values = {k: float(v) for name, entry in captured.items()
              for k, v in monitor.diagnose(name, entry).items() if v is not None}
    monitor.log_snapshot(step)
    monitor.close()
    return values, captured


def test_dead_is_one_under_relu_and_zero_under_leaky_relu(tmp_path):
    x = torch.randn(32, 4)
    values, _ = snapshot(probe(nn.ReLU, bias=-5.0), nn.ReLU, tmp_path / "relu", x)
    assert values["dead/act1"] == 1.0
    values, _ = snapshot(probe(LeakyReLU, bias=-5.0), LeakyReLU, tmp_path / "leaky", x)
    assert values["dead/act1"] == 0.0
    scalars, histograms = read_events(tmp_path / "relu")
    assert scalars["dead/act1"] == [(0, 1.0)] and "activation/act1" in histograms
    assert "saturated/act1" not in scalars  # relu does not saturate


def test_dead_counts_units_not_outputs():
    # unit 0 fires for some examples only (alive); unit 1 never fires (dead); unit 2 always fires
    x = torch.tensor([[-1.0, -2.0, 1.0], [1.0, -3.0, 2.0]])
    assert dead_fraction(nn.ReLU(), x) == pytest.approx(1 / 3)
    # conv outputs: a channel is one unit, dead only if no example and no position passes a gradient
    conv = torch.full((2, 4, 3, 3), -1.0)
    conv[1, 0, 2, 2] = 0.5  # one position of channel 0 fires
    conv[:, 3] = 2.0
    assert dead_fraction(nn.ReLU(), conv) == pytest.approx(2 / 4)
    assert dead_fraction(nn.LeakyReLU(0.01), conv) == 0.0


def test_dead_for_the_gated_unit_needs_both_halves_silent():
    gate = SwiGLU()
    # output unit 0: gate a=0 (swish(0) = 0) and linear half b=0 (swish'(a)·b = 0): no gradient at all
    # output unit 1: b = 0 but swish(a) ≠ 0, so its linear half still learns
    x = torch.tensor([[0.0, 2.0, 0.0, 0.0]]).repeat(5, 1)
    assert dead_fraction(gate, x) == pytest.approx(1 / 2)
    assert dead_fraction(gate, torch.randn(8, 6, 2, 2)) == 0.0


# sigmoid'(±10) ≈ 4.5e-5 is tiny but not zero; in float32 tanh(±10) rounds to ±1, so tanh'(±10) is exactly 0
@pytest.mark.parametrize("activation, dead", [(nn.Sigmoid, 0.0), (nn.Tanh, 1.0)])
def test_saturation_is_one_when_fed_plus_minus_ten(tmp_path, activation, dead):
    signs = torch.tensor([10.0, -10.0, 10.0, -10.0, 10.0, -10.0])
    values, _ = snapshot(probe(activation, bias=signs), activation, tmp_path, torch.randn(16, 4))
    assert values["saturated/act1"] == 1.0
    assert values["dead/act1"] == dead


def test_saturation_thresholds():
    y = torch.tensor([0.005, 0.5, 0.995, 0.98])
    assert saturated_fraction(nn.Sigmoid(), y) == 0.5
    assert saturated_fraction(nn.Tanh(), torch.tensor([-0.995, 0.5, 0.9, 0.999])) == 0.5
    assert saturated_fraction(nn.ReLU(), y) is None


def test_mean_and_std_match_the_tensors(tmp_path):
    torch.manual_seed(0)
    model = probe(nn.Tanh, bias=0.0, weight=0.3)
    x = torch.randn(64, 4)
    pre = model.fc1(x).detach()
    act = pre.tanh()
    act_in = act.clone().requires_grad_()
    loss = nn.functional.cross_entropy(model.head(act_in), torch.zeros(64, dtype=torch.long))
    (grad,) = torch.autograd.grad(loss, act_in)
    model.zero_grad()
    values, _ = snapshot(model, nn.Tanh, tmp_path, x)
    for kind, t in (("preact", pre), ("act", act), ("act_grad", grad)):
        assert values[f"{kind}/mean/act1"] == pytest.approx(t.mean().item(), rel=1e-5, abs=1e-9)
        assert values[f"{kind}/std/act1"] == pytest.approx(t.std().item(), rel=1e-5)


def test_hooks_record_nothing_when_histograms_are_off(tmp_path):
    model = probe(nn.ReLU, bias=0.0, weight=0.5)
    monitor = Monitor(tmp_path, model, nn.ReLU, hist_every=0)
    out = model(torch.randn(4, 4))
    assert monitor.captured == {} and out.grad_fn is not None
    assert not monitor.due(5, last_of_epoch=False) and not monitor.due(5, last_of_epoch=True)  # 0 = off
    monitor.close()


@pytest.mark.parametrize("activation", [nn.ReLU, nn.Sigmoid])
def test_logged_dead_and_saturated_match_a_recomputation(tmp_path, activation):
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 8, 3)
    with torch.no_grad():
        conv.bias[:3] = -50.0  # channels 0-2 always far below zero, 3-4 far above, 5-7 mixed
        conv.bias[3:5] = 50.0
        conv.weight[5:] *= 10.0  # pre-activations of a few units: sigmoid saturates at some positions only
    model = nn.Sequential(conv, activation(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3))
    x = torch.randn(16, 3, 6, 6)
    monitor = Monitor(tmp_path, model, activation, hist_every=1)
    monitor.snapshot()
    nn.functional.cross_entropy(model(x), torch.randint(0, 3, (16,))).backward()
    monitor.log_snapshot(7)
    monitor.close()
    scalars, _ = read_events(tmp_path)

    # the lecture's definitions on the layer's own pre-activation, with no autograd: a unit (channel) is dead
    # when its derivative is zero at every example and position; saturated = outputs in the flat tails
    pre = conv(x).detach()
    if activation is nn.ReLU:
        slope, saturated = (pre > 0).float(), None
    else:
        y = pre.sigmoid()
        slope, saturated = y * (1 - y), ((y < 0.01) | (y > 0.99)).float().mean().item()
    dead = (slope == 0).all(0).flatten(1).all(1).float().mean().item()
    assert dead == {nn.ReLU: 3 / 8, nn.Sigmoid: 2 / 8}[activation]  # sigmoid(50) is exactly 1.0 in float32
    assert scalars["dead/1"] == [(7, pytest.approx(dead, abs=1e-7))]
    if saturated is None:
        assert "saturated/1" not in scalars
    else:
        assert 5 / 8 < saturated < 1  # channels 0-4 entirely, 5-7 partly
        assert scalars["saturated/1"] == [(7, pytest.approx(saturated, abs=1e-7))]


def test_per_channel_prelu_layers_are_found_after_materializing(tmp_path):
    model = nn.Sequential(nn.Conv2d(3, 5, 3), PReLU(), nn.Flatten(), nn.LazyLinear(2))
    materialize(model, torch.randn(2, 3, 6, 6))
    assert type(model[1]) is nn.PReLU and model[1].weight.shape == (5,)
    values, _ = snapshot(model, PReLU, tmp_path, torch.randn(4, 3, 6, 6))
    assert values["dead/1"] == 0.0 and "act_grad/std/1" in values


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """One CLI sweep, sigmoid and prelu on a convnet: two run folders."""
    root = tmp_path_factory.mktemp("sweep")
    run_cli("train", "-m", *FAST, "log.hist_every=3", "trainer.epochs=2", "dataset.num_train=512",  # 4 steps/epoch
            "activation=sigmoid,prelu", "hydra.sweep.dir=multi", cwd=root,
            env={"DEEPROB_CACHE": str(root / "cache")})
    return {summary(d)["choices"]["activation"]: d for d in run_dirs(root / "multi")}


def test_event_files_hold_the_diagnostics(sweep):
    assert set(sweep) == {"sigmoid", "prelu"}
    for name, run in sweep.items():
        assert summary(run)["status"] == "completed"
        scalars, histograms = read_events(run)
        layers = {t.split("/", 1)[1] for t in histograms if t.startswith("activation/")}
        assert layers == {"act1_1", "act1_2", "act2_1", "act2_2"}  # FAST: two stages of two convs
        for layer in layers:
            expected = {f"dead/{layer}", f"preact/mean/{layer}", f"act/std/{layer}", f"act_grad/std/{layer}"}
            assert expected <= set(scalars)
            assert (f"saturated/{layer}" in scalars) == (name == "sigmoid")
            assert all(0.0 <= v <= 1.0 for _, v in scalars[f"dead/{layer}"])


def test_snapshots_are_taken_every_hist_every_steps_and_at_each_epoch_end(sweep):
    # hist_every=3 with 4 steps per epoch, 2 epochs: steps 0, 3 (also epoch 1's last), 6 and 7 (epoch 2's last)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(sweep["sigmoid"]), size_guidance={"histograms": 0, "scalars": 0})
    events.Reload()
    assert summary(sweep["sigmoid"])["steps"] == 8
    for tag in ("activation/act2_2", "weight/conv1_1.weight", "grad/head.weight"):
        assert [e.step for e in events.Histograms(tag)] == [0, 3, 6, 7], tag
    for tag in ("dead/act1_1", "saturated/act2_1", "act_grad/std/act1_2"):
        assert [e.step for e in events.Scalars(tag)] == [0, 3, 6, 7], tag


def test_prelu_run_keeps_per_channel_alpha_and_evaluates(sweep):
    run = sweep["prelu"]
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert state["act1_1.weight"].shape == (8,) and state["act2_1.weight"].shape == (16,)
    assert not torch.equal(state["act1_1.weight"], torch.full((8,), 0.25))  # α was trained
    result = run_cli("eval", str(run), cwd=run.parent)
    assert f"{summary(run)['val_acc']:.4f}" in result.stdout  # the restored model scores what training measured


def test_plot_inside_a_run_logs_to_its_tensorboard(sweep):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = sweep["sigmoid"]
    run_cli("plot", "activations", cwd=run)
    assert (run / "activations.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    events = EventAccumulator(str(run))
    events.Reload()
    assert "activations" in events.Tags()["images"]


def test_a_diverged_layer_is_still_logged(tmp_path):
    model = probe(nn.ReLU, bias=float("inf"))
    values, _ = snapshot(model, nn.ReLU, tmp_path, torch.randn(4, 4))  # inf activations, nan gradients
    scalars, histograms = read_events(tmp_path)
    assert "dead/act1" in scalars and "weight/head.weight" in histograms


# ---------------------------------------------------------------- what TensorBoard is given (issue 28)

def declared_metrics(run):
    """The final/<key> metrics the run's HParams experiment declares (read from its event file)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import metadata

    acc = EventAccumulator(str(run))
    acc.Reload()
    content = acc.PluginTagToContent("hparams")[metadata.EXPERIMENT_TAG]
    return [m.name.tag for m in metadata.parse_experiment_plugin_data(content).metric_infos]


def test_hparams_declare_only_the_metrics_the_run_can_have(tmp_path):
    """No test split and tta=flip: val_acc_tta, no test_*; the default tta=none: no *_tta (it would repeat val_acc)."""
    small = [*FAST, "dataset.num_train=384", "dataset.val_size=128"]
    run_cli("train", *small, "dataset.num_test=0", "tta=flip", "hydra.run.dir=flip", cwd=tmp_path)
    run_cli("train", *small, "hydra.run.dir=plain", cwd=tmp_path)
    assert declared_metrics(tmp_path / "flip") == [
        "final/val_acc", "final/train_loss", "final/train_acc", "final/val_loss", "final/val_acc_tta"]
    assert declared_metrics(tmp_path / "plain") == [
        "final/val_acc", "final/test_acc", "final/train_loss", "final/train_acc", "final/val_loss"]
    for run in ("flip", "plain"):  # what is declared is what is written: every declared metric has its value
        scalars, _ = read_events(tmp_path / run)
        assert sorted(t for t in scalars if t.startswith("final/")) == sorted(declared_metrics(tmp_path / run))
        assert scalars["final/val_acc"] == [(summary(tmp_path / run)["steps"], pytest.approx(
            summary(tmp_path / run)["val_acc"]))]
    scalars, _ = read_events(tmp_path / "plain")  # one writer per split, the same tags
    assert [s for s, _ in scalars["train/loss"]] == list(range(4)) and [s for s, _ in scalars["val/acc"]] == [3]
    assert scalars["test/acc"] == [(3, pytest.approx(summary(tmp_path / "plain")["test_acc"]))]  # 256 / 64 steps


def test_a_run_diverging_in_its_first_epoch_has_its_finite_losses_in_tensorboard(tmp_path):
    """optim.lr=1e6: the losses computed before the divergence reach the event file, and compare draws them."""
    from deeprob_cli import compare

    result = run_cli("train", *FAST, "trainer.epochs=2", "optim.lr=1e6", "hydra.run.dir=run", cwd=tmp_path,
                     check=False)
    s = summary(tmp_path / "run")
    assert result.returncode == 3 and s["status"] == "diverged"
    assert s["epochs_completed"] == 0 and s["steps"] >= 2  # the premise: finite steps, then divergence in epoch 1
    scalars, _ = read_events(tmp_path / "run")
    losses = scalars["train/loss"]
    assert [step for step, _ in losses] == list(range(s["steps"]))
    assert all(math.isfinite(v) for _, v in losses) and losses[-1][1] == pytest.approx(s["last_finite_loss"])
    steps, values = compare.curves(tmp_path / "run")["train/loss"]
    assert steps == [(i + 1) / 12 for i in range(s["steps"])]  # 768 training images, batch 64: 12 steps per epoch
    assert values == [pytest.approx(v) for _, v in losses]
    # resume=auto starts it over (no checkpoint to continue): each step is shown once, from the new start
    again = run_cli("train", *FAST, "trainer.epochs=2", "optim.lr=1e6", "hydra.run.dir=run", "resume=auto",
                    cwd=tmp_path, check=False)
    assert again.returncode == 3 and read_events(tmp_path / "run")[0]["train/loss"] == losses
