"""Models take their activation from the group and fit any image shape; schedules follow their formulas."""
import math

import pytest
import torch
from torch import nn

from deeprob_cli import UserError
from deeprob_cli.components import schedule
from deeprob_cli.config import build

from conftest import FAST, make_cfg, summary

MODELS = ["mlp", "convnet", "resnet"]


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 28, 28), (3, 16, 12)])
def test_every_model_fits_the_data_shape(model, shape):
    cfg = make_cfg(f"model={model}", "activation=tanh")
    net = build(cfg.model, "model", in_shape=shape, num_classes=7, activation=build(cfg.activation, "activation"))
    assert net(torch.rand(2, *shape)).shape == (2, 7)


@pytest.mark.parametrize("model", MODELS)
def test_models_use_only_the_chosen_activation(model):
    cfg = make_cfg(f"model={model}", "activation=gelu")
    net = build(cfg.model, "model", in_shape=(3, 16, 16), num_classes=3, activation=build(cfg.activation, "activation"))
    kinds = {type(m) for m in net.modules()}
    assert any(issubclass(k, nn.GELU) for k in kinds)
    assert not any(issubclass(k, (nn.ReLU, nn.Tanh, nn.Sigmoid)) for k in kinds)


def test_resnet_depth_is_6n_plus_2():
    cfg = make_cfg("model=resnet", "model.depth=20")
    net = build(cfg.model, "model", in_shape=(3, 8, 8), num_classes=2, activation=build(cfg.activation, "activation"))
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert len(convs) + len(linears) == 20
    with pytest.raises(UserError, match="model.depth: 21 is not of the form 6n\\+2"):
        build(make_cfg("model=resnet", "model.depth=21").model, "model", in_shape=(3, 8, 8), num_classes=2,
              activation=nn.ReLU)


@pytest.mark.parametrize("override, message", [
    ("model.widths=[0,4]", r"^model\.widths: \[0, 4\] is not allowed; expected a list of positive integers$"),
    ("model.pool=middle", r"^model\.pool: 'middle' is not allowed; expected one of last, first$"),
    ("model.norm=layer", r"^model\.norm: 'layer' is not allowed; expected one of batch, none$"),
])
def test_convnet_parameters_are_refused_in_one_line_naming_the_key(override, message):
    cfg = make_cfg("model=convnet", override)
    with pytest.raises(UserError, match=message):
        build(cfg.model, "model", in_shape=(3, 8, 8), num_classes=2, activation=nn.ReLU)


def test_resnet_without_norm_has_fixups_scalars_acting_where_the_paper_puts_them():
    """norm=none: each block has bias1a, bias1b, bias2a, bias2b (0) and scale (1): the plain block at first;
    F = scale·conv2(act(conv1(x + b1a) + b1b) + b2a) + b2b and the shortcut sees x + b1a. norm=batch: none."""
    from deeprob_cli.models import BasicBlock

    torch.manual_seed(0)
    block = BasicBlock(4, 8, 2, nn.ReLU, "none")
    x = torch.randn(2, 4, 6, 6)
    plain = block.conv2(block.act1(block.conv1(x)))
    assert torch.equal(block.residual(x), plain * 1 + 0)
    with torch.no_grad():
        block.bias1a.fill_(0.1), block.bias1b.fill_(-0.2), block.bias2a.fill_(0.3), block.bias2b.fill_(0.4)
        block.scale.fill_(1.5)
        by_hand = 1.5 * block.conv2(block.act1(block.conv1(x + 0.1) - 0.2) + 0.3) + 0.4
        assert torch.allclose(block.residual(x), by_hand, atol=1e-6)
        assert torch.allclose(block(x), block.act2(by_hand + block.shortcut(x + 0.1)), atol=1e-6)
    assert not hasattr(BasicBlock(4, 8, 2, nn.ReLU, "batch"), "scale")


def _lrs(make, steps, **kw):
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1)
    sched = make(opt, total_steps=steps, **kw)
    lrs = []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def test_cosine_follows_half_cosine_after_warmup():
    lrs = _lrs(schedule.cosine, 100, warmup=0.1)
    assert lrs[0] == pytest.approx(0.01) and lrs[9] == pytest.approx(0.1)
    t = (50 - 10) / 90
    assert lrs[50] == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * t)))
    assert lrs[-1] < 0.001


def test_onecycle_peaks_at_optim_lr_and_constant_stays():
    lrs = _lrs(schedule.onecycle, 100, warmup=0.25)
    assert max(lrs) == pytest.approx(0.1) and lrs.index(max(lrs)) in (24, 25)
    assert lrs[0] == pytest.approx(0.1 / 25) and lrs[-1] < 1e-5
    assert set(_lrs(schedule.constant, 10)) == {0.1}


def test_adamw_option_is_torch_adamw_with_its_yaml_values_and_drives_training(tmp_path):
    """optim=adamw builds torch.optim.AdamW from conf/optim/adamw.yaml, and a run steps it: the checkpoint holds
    Adam's two moments for every parameter, advanced once per training step."""
    from omegaconf import OmegaConf

    from deeprob_cli.checkpoint import load_checkpoint
    from deeprob_cli.config import CONFIG_DIR
    from deeprob_cli.train import train

    yaml = OmegaConf.load(CONFIG_DIR / "optim" / "adamw.yaml")
    optimizer = build(make_cfg("optim=adamw").optim, "optim", params=nn.Linear(2, 2).parameters())
    group = optimizer.param_groups[0]
    assert type(optimizer) is torch.optim.AdamW
    assert (group["lr"], tuple(group["betas"]), group["weight_decay"]) == (yaml.lr, tuple(yaml.betas), 0.0)

    train(make_cfg(*FAST, "optim=adamw", "optim.lr=0.003", "regularizer=none", "schedule=constant",
                   "log.hist_every=0"), tmp_path, choices={}, sweep=True)
    s, state = summary(tmp_path), load_checkpoint(tmp_path / "checkpoints" / "last.pt")["optimizer"]
    assert state["param_groups"][0]["lr"] == 0.003 and tuple(state["param_groups"][0]["betas"]) == (0.9, 0.999)
    n_params = sum(len(g["params"]) for g in state["param_groups"])  # weights, then norm biases (optim.param_groups)
    assert n_params > 0 and len(state["state"]) == n_params
    assert all({"exp_avg", "exp_avg_sq"} <= set(m) and int(m["step"]) == s["steps"] for m in state["state"].values())
    assert s["status"] == "completed" and s["val_acc"] > 0.5  # 4 separable classes: chance is 0.25
