"""`deeprob init-stats`: the lecture's activation statistics through 6 fully connected layers of 4096 units
(batch 16, unit-Gaussian input), with the lecture's claims asserted at margins checked against its numpy snippet."""
import json

import pytest
import torch

from conftest import make_cfg, read_events, run_cli, run_dirs
from deeprob_cli import UserError
from deeprob_cli.init_stats import measure, run


def lecture(*overrides):
    """(stats, activation outputs) of the lecture's default stack for these overrides."""
    return measure(make_cfg(*overrides, config_name="init_stats"))


def test_small_random_numbers_shrink_tanh_activations_to_zero():
    stats, _ = lecture("init=normal", "init.std=0.01", "activation=tanh")
    stds = [s["std"] for s in stats]
    assert len(stds) == 6
    assert all(b < a for a, b in zip(stds, stds[1:]))
    assert stds[5] < 0.1


def test_larger_random_numbers_saturate_tanh():
    stats, outputs = lecture("init=normal", "init.std=0.05", "activation=tanh")
    assert (outputs[5].abs() > 0.9).float().mean() > 0.5
    # saturated is the share of outputs with |y| > 0.99 for tanh, exactly
    for s, y in zip(stats, outputs):
        assert s["saturated"] == pytest.approx((y.abs() > 0.99).float().mean().item(), abs=1e-4)  # float rounding at the edge


def test_xavier_keeps_tanh_activations_scaled():
    stats, outputs = lecture("init=xavier", "activation=tanh")
    assert stats[5]["std"] > 0.2
    assert (outputs[5].abs() > 0.9).float().mean() < 0.05


def test_xavier_collapses_relu_and_kaiming_does_not():
    xavier, _ = lecture("init=xavier", "activation=relu")
    assert xavier[5]["std"] < 0.25 * xavier[0]["std"]
    kaiming, outputs = lecture("init=kaiming", "activation=relu")
    assert 0.5 * kaiming[0]["std"] < kaiming[5]["std"] < 2 * kaiming[0]["std"]
    # dead = share of units that are 0 for every example of the batch; ReLU never saturates
    for s, y in zip(kaiming, outputs):
        assert s["dead"] == pytest.approx((y == 0).all(0).float().mean().item(), abs=1e-6)
        assert s["saturated"] == 0


def test_zero_weights_kill_every_relu_unit():
    stats, _ = lecture("init=zeros", "activation=relu", "init_stats.dims=[64,64,64]")
    assert [s["dead"] for s in stats] == [1.0, 1.0]
    assert [s["std"] for s in stats] == [0.0, 0.0]


def test_same_seed_same_numbers():
    small = ["init=kaiming", "activation=tanh", "init_stats.dims=[256,256,256,256]"]
    first, _ = lecture(*small)
    assert lecture(*small)[0] == first
    assert lecture(*small, "trainer.seed=1")[0] != first


def test_cli_sweep_writes_stats_png_and_histograms(tmp_path):
    dims = "init_stats.dims=[512,512,512,512]"
    result = run_cli("init-stats", "-m", "init=xavier,kaiming", "activation=relu", dims,
                     f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path)
    runs = run_dirs(tmp_path / "sweep")
    assert len(runs) == 2
    for run_dir, option in zip(runs, ["xavier", "kaiming"]):
        stats = json.loads((run_dir / "stats.json").read_text())
        assert [s["layer"] for s in stats] == [1, 2, 3]
        assert all(set(s) == {"layer", "mean", "std", "saturated", "dead"} for s in stats)
        assert stats == measure(make_cfg(f"init={option}", "activation=relu", dims, config_name="init_stats"))[0]
        for s in stats:  # the printed table holds the same numbers
            assert f"{s['std']:.5f}" in result.stdout
        assert (run_dir / "histograms.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        _, histograms = read_events(run_dir)
        assert histograms == {"activation/by_layer"}  # one tag stepped by layer: tests/test_tensorboard.py
    xavier, kaiming = (json.loads((r / "stats.json").read_text())[0]["std"] for r in runs)
    assert kaiming == pytest.approx(xavier * 2 ** 0.5, rel=1e-4)  # same seed: the same draws, scaled by √2


def test_cli_mistake_is_one_line(tmp_path):
    result = run_cli("init-stats", "init=kaiming", "init.mode=sideways", cwd=tmp_path, check=False)
    assert result.returncode == 2
    assert result.stderr.strip() == "deeprob init-stats: error: init.mode: 'sideways' is not allowed; expected one of fan_in, fan_out"


@pytest.mark.parametrize("override, message", [
    ("init_stats.batch=0", r"^init_stats\.batch: 0 is not allowed; expected a positive integer$"),
    ("init_stats.dims=[8]", r"^init_stats\.dims: \[8\] is not allowed"),
])
def test_bad_values_are_user_errors(tmp_path, override, message):
    with pytest.raises(UserError, match=message):
        run(make_cfg(override, config_name="init_stats"), tmp_path)


def test_a_gated_activation_is_measured_per_output_unit():
    """A gated unit takes k× wider input (in_factor); its statistics are over its own outputs."""
    from torch import nn

    from deeprob_cli.components import init
    from deeprob_cli.init_stats import build_stack, layer_outputs, layer_stats

    class GatedLinearUnit(nn.GLU):  # a·σ(b) on the two halves of its input
        in_factor = 2

    torch.manual_seed(0)
    stack = build_stack([32, 16, 16], GatedLinearUnit)
    assert stack[0].out_features == 32 and stack[2].in_features == 16
    init.zeros(stack, activation=GatedLinearUnit())
    (pre, y), _ = layer_outputs(stack, torch.randn(8, 32))
    stats = layer_stats(stack[1], pre, y)
    assert y.shape == (8, 16) and stats["std"] == 0 and stats["dead"] == 0  # slope σ(0) = 0.5 w.r.t. a: alive
