"""Regularizers (conf/regularizer/): the lecture's formulas and training/test rules, every option training with
every model it applies to, and every impossible combination refused in one line."""
import copy
import json
import math
from functools import partial

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from conftest import make_cfg, run_cli
from deeprob_cli import UserError
from deeprob_cli.checkpoint import load_checkpoint
from deeprob_cli.components.activation import PReLU, Swish, materialize
from deeprob_cli.components.regularizer import (L1, L2, CutMix, Cutout, DropConnect, DropConnectLinear, Dropout,
                                                ElasticNet, ExpectedDepth, FractionalPool, LabelSmoothing, Mixup,
                                                StochasticDepth, VanillaDropout, batch_mixer, decayed_weights,
                                                loss_function)
from deeprob_cli.config import check, option_names
from deeprob_cli.evaluate import restore
from deeprob_cli.models import MLP, BasicBlock, ConvNet, ResNet
from deeprob_cli.train import train

OPTIONS = option_names("regularizer")
MODELS = {"mlp": ["model.width=32", "model.depth=2"], "convnet": ["model.widths=[8,16]"],
          "resnet": ["model.depth=8", "model.width=8"]}
# (regularizer overrides, model) pairs that cannot apply, and a word of the one-line error
REFUSED = [(["regularizer=stochastic_depth"], "mlp", "residual"), (["regularizer=stochastic_depth"], "convnet", "residual"),
           (["regularizer=dropconnect"], "convnet", "hidden"), (["regularizer=dropconnect"], "resnet", "hidden"),
           (["regularizer=dropconnect", "model.depth=0"], "mlp", "hidden"),
           (["regularizer=fractional_pool"], "mlp", "max-pooling"),
           (["regularizer=fractional_pool"], "resnet", "max-pooling"),
           (["regularizer=dropout", "regularizer.dropout.conv_p=0.2"], "mlp", "conv_p"),
           (["regularizer=dropout", "model.depth=0"], "mlp", "after a hidden layer")]
TINY = ["dataset=synthetic", "dataset.num_train=96", "dataset.val_size=32", "dataset.num_test=0",
        "dataset.image_size=8", "trainer.epochs=1", "trainer.batch_size=32", "log.hist_every=0", "trainer.device=cpu"]
tanh = partial(nn.Tanh)
CHANGED_LAYER = {"dropout": nn.Dropout, "dropconnect": DropConnectLinear, "fractional_pool": nn.FractionalMaxPool2d,
                 "stochastic_depth": torchvision.ops.StochasticDepth}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # tiny tensors: on 2 shared, busy cores a second intra-op thread made these tests ~10× slower (measured)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def refused(option, model):
    return any(r[0] == [f"regularizer={option}"] and r[1] == model for r in REFUSED)


# ---------------------------------------------------------------- every option, every model

@pytest.mark.parametrize("model", sorted(MODELS))
@pytest.mark.parametrize("option", OPTIONS)
def test_every_option_trains_with_every_model_it_applies_to(option, model, tmp_path):
    cfg = make_cfg(*TINY, f"model={model}", *MODELS[model], f"regularizer={option}")
    if refused(option, model):
        with pytest.raises(UserError, match=f"regularizer={option}: "):
            check(cfg)
        return
    train(cfg, tmp_path, choices={"regularizer": [option]})
    state = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert state["progress"]["step"] == 2  # 64 training images, batches of 32
    result = json.loads((tmp_path / "summary.json").read_text())
    assert math.isfinite(result["train_loss"]) and math.isfinite(result["val_loss"])
    # the regularizer acted: the same seed without it ends with other weights (smaller ones for a penalty)
    if option != "none":
        plain = _unregularized(model, tmp_path.parent / f"{tmp_path.name}-none")
        assert any(not torch.equal(state["model"][k], plain[k]) for k in plain)
        size = {"l2": lambda w: w.pow(2).sum(), "l1": lambda w: w.abs().sum()}.get(option)
        if size is not None:
            weights = [k for k in plain if k.endswith("weight") and plain[k].dim() > 1]
            assert sum(size(state["model"][k]) for k in weights) < sum(size(plain[k]) for k in weights)
    # `deeprob eval` rebuilds the model with the regularizer's changes (fractional pooling's test averaging)
    restored, _ = restore(state, cfg, torch.device("cpu"))
    if option in CHANGED_LAYER:
        assert any(isinstance(m, CHANGED_LAYER[option]) for m in restored.modules())


_PLAIN = {}


def _unregularized(model, out):
    """Final weights of the same tiny run with regularizer=none (once per model)."""
    if model not in _PLAIN:
        train(make_cfg(*TINY, f"model={model}", *MODELS[model], "regularizer=none"), out, choices={})
        _PLAIN[model] = load_checkpoint(out / "checkpoints" / "last.pt")["model"]
    return _PLAIN[model]


@pytest.mark.parametrize("overrides,model,word", REFUSED)
def test_impossible_combinations_are_refused_before_any_work(overrides, model, word):
    with pytest.raises(UserError, match=word) as e:
        check(make_cfg("dataset=synthetic", f"model={model}", *overrides))
    assert "\n" not in str(e.value) and str(e.value).startswith(overrides[0] + ":")


# a CLI start costs seconds on 2 shared cores: one pair in the default suite, every pair with -m slow
@pytest.mark.parametrize("overrides,model,word", [
    pytest.param(*r, id=f"{r[0][0].split('=')[1]}-{r[1]}", marks=() if i == 0 else pytest.mark.slow)
    for i, r in enumerate(REFUSED)])
def test_refused_combination_on_the_real_cli(overrides, model, word, tmp_path):
    result = run_cli("train", *TINY, f"model={model}", *overrides, cwd=tmp_path, check=False)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"deeprob train: error: {overrides[0]}:") and word in lines[0]
    assert "Traceback" not in result.stderr and not list(tmp_path.rglob("summary.json"))


# ---------------------------------------------------------------- weight penalties

def _known_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, -2.0, 0.0], [0.5, 3.0, -1.5]]))
    return model


@pytest.mark.parametrize("reg,expected", [
    (L1(strength=0.1), lambda w: 0.1 * w.sign()),
    (L2(strength=0.1), lambda w: 2 * 0.1 * w),
    (ElasticNet(strength=0.1, beta=3.0), lambda w: 0.1 * (2 * 3.0 * w + w.sign())),
], ids=["l1", "l2", "elastic_net"])
def test_penalty_gradient_on_a_known_tensor(reg, expected):
    model = _known_model()
    w = model[0].weight
    reg.penalty(model).backward()
    assert torch.allclose(w.grad, expected(w.detach()))
    assert model[0].bias.grad is None and model[1].weight.grad is None and model[1].bias.grad is None  # exempt


def test_elastic_net_is_beta_times_l2_plus_l1():
    model = _known_model()
    total = L2(strength=0.1 * 3.0).penalty(model) + L1(strength=0.1).penalty(model)
    assert torch.allclose(ElasticNet(strength=0.1, beta=3.0).penalty(model), total)
    assert math.isclose(L1(strength=0.1).penalty(model).item(), 0.1 * 8.0, rel_tol=1e-6)


def test_decoupled_decay_shrinks_weights_by_lr_2lambda_per_step():
    model = _known_model()
    w0, b0 = model[0].weight.detach().clone(), model[0].bias.detach().clone()
    reg, lr = L2(strength=0.01, decoupled=True), 0.5
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    assert reg.penalty(model) == 0.0  # nothing added to the loss
    for _ in range(3):
        optimizer.zero_grad()
        (0 * sum(p.sum() for p in model.parameters())).backward()  # zero loss gradient
        optimizer.step()
        reg.after_step(model, lr)
    assert torch.allclose(model[0].weight, w0 * (1 - lr * 2 * 0.01) ** 3)
    assert torch.equal(model[0].bias, b0)


def test_coupled_and_decoupled_l2_take_the_same_sgd_steps():
    """One meaning of λ: under plain SGD the decoupled shrink equals the coupled gradient 2λW, up to the
    second-order term lr²·2λ·∇ (the shrink follows the gradient step); before the fix decoupled decayed half
    as much, a difference 40× larger here."""
    torch.manual_seed(0)
    x, y = torch.randn(64, 3), torch.randn(64, 2)
    weights = []
    for decoupled in (False, True):
        model, reg = _known_model(), L2(strength=0.05, decoupled=decoupled)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        for _ in range(5):
            optimizer.zero_grad()
            (F.mse_loss(model(x), y) + reg.penalty(model)).backward()
            optimizer.step()
            reg.after_step(model, 0.1)
        weights.append(model[0].weight.detach())
    assert (weights[0] - weights[1]).abs().max() < 1e-3
    assert (weights[0] - _known_model()[0].weight).abs().max() > 0.05  # the steps did move W


def _activation_model(activation):
    torch.manual_seed(0)
    model = MLP((1, 4, 4), 3, activation, depth=2, width=8)
    materialize(model, torch.randn(4, 1, 4, 4))
    return model


@pytest.mark.parametrize("activation, param", [(partial(PReLU), "weight"), (partial(Swish, learnable=True), "beta")],
                         ids=["prelu", "swish"])
@pytest.mark.parametrize("reg", [L2(strength=0.1), L1(strength=0.1), ElasticNet(strength=0.1),
                                 L2(strength=0.1, decoupled=True), L1(strength=0.1, proximal=True)],
                         ids=["l2", "l1", "elastic_net", "l2_decoupled", "l1_proximal"])
def test_weight_penalties_leave_activation_parameters_alone(activation, param, reg):
    """He et al. 2015 §2.1: no decay on PReLU's α (it would pull α to 0, i.e. ReLU); same for Swish's β."""
    model = _activation_model(activation)
    act = model.act1
    before = getattr(act, param).detach().clone()
    assert all(w is not getattr(act, param) for w in decayed_weights(model))
    assert len(list(decayed_weights(model))) == 3  # fc1, fc2, head
    penalty = reg.penalty(model)
    if torch.is_tensor(penalty):
        penalty.backward()
        assert getattr(act, param).grad is None
    reg.after_step(model, 0.5) if hasattr(reg, "after_step") else None
    assert torch.equal(getattr(act, param), before)


def test_proximal_l1_soft_thresholds_after_the_step():
    model = _known_model()
    L1(strength=0.4, proximal=True).after_step(model, lr=2.5)  # threshold lr·λ = 1
    assert torch.equal(model[0].weight, torch.tensor([[0.0, -1.0, 0.0], [0.0, 2.0, -0.5]]))
    assert L1(strength=0.4, proximal=True).penalty(model) == 0.0


def test_proximal_l1_gives_exact_zeros_on_a_toy_lasso():
    """y = X w* with 5 relevant of 50 inputs: the subgradient form leaves (almost) every irrelevant weight
    oscillating near 0, the proximal step sets them exactly to 0 and keeps the relevant ones."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 50, generator=g)
    truth = torch.zeros(50)
    truth[:5] = torch.tensor([2.0, -1.5, 1.0, 3.0, -2.5])
    y = x @ truth + 0.1 * torch.randn(256, generator=g)
    zeros = {}
    for proximal in (False, True):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(50, 1, bias=False))
        reg = L1(strength=0.05, proximal=proximal)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
        for _ in range(500):
            optimizer.zero_grad()
            (F.mse_loss(model(x).squeeze(1), y) / 2 + reg.penalty(model)).backward()
            optimizer.step()
            reg.after_step(model, 0.05)
        w = model[0].weight.detach().squeeze(0)
        zeros[proximal] = (w[5:] == 0).sum().item()
        assert (w[:5] - truth[:5]).abs().max() < 0.15  # the relevant weights are found either way
    assert zeros[False] <= 5 and zeros[True] == 45, zeros


# ---------------------------------------------------------------- dropout and dropconnect

def test_dropout_drops_p_of_the_units_and_keeps_the_mean():
    torch.manual_seed(0)
    model = MLP((1, 4, 4), 3, tanh, depth=1, width=256)
    Dropout(p=0.3).apply(model, nn.Tanh())
    assert isinstance(model.dropout1, nn.Dropout) and model.dropout1.p == 0.3
    x = torch.randn(16, 1, 4, 4)
    model.eval()
    expected = model(x)
    seen = []
    model.dropout1.register_forward_hook(lambda m, i, o: seen.append((i[0], o)))
    assert torch.equal(model(x), expected) and torch.equal(*seen[-1])  # nothing dropped at test, no rescaling
    model.train()
    with torch.no_grad():  # 3000 masks at once: every row draws its own
        mean = model(x.repeat(3000, 1, 1, 1)).view(3000, *expected.shape).mean(0)
    inputs, outputs = seen[-1]
    live = inputs != 0
    assert abs((outputs[live] == 0).float().mean().item() - 0.3) < 0.01
    kept = live & (outputs != 0)
    assert torch.allclose(outputs[kept], inputs[kept] / 0.7)  # inverted scaling
    assert (mean - expected).norm() / expected.norm() < 0.02  # mean over masks = the test-time output


@pytest.mark.parametrize("channels", [False, True])
def test_vanilla_and_inverted_dropout_have_the_same_expected_output(channels):
    """Vanilla dropout (kept units unscaled in training, × keep probability at test) and inverted dropout
    (kept units × 1/keep in training, unchanged at test): each test output is the mean of its training
    outputs over masks, and the two differ exactly by the factor 1−p."""
    torch.manual_seed(0)
    p = 0.3
    x = torch.rand(4, 6, 3, 3) + 0.5
    vanilla, inverted = VanillaDropout(p, channels), (nn.Dropout2d(p) if channels else nn.Dropout(p))
    vanilla.eval(), inverted.eval()
    assert torch.equal(vanilla(x), x * (1 - p)) and torch.equal(inverted(x), x)
    vanilla.train(), inverted.train()
    with torch.no_grad():
        drawn = torch.stack([vanilla(x) for _ in range(4000)])
        mean_inverted = torch.stack([inverted(x) for _ in range(4000)]).mean(0)
    kept = drawn != 0
    assert torch.equal(drawn[kept], x.expand_as(drawn)[kept])  # kept units unscaled
    assert abs(1 - kept.float().mean().item() - p) < 0.01
    if channels:  # whole feature maps
        assert torch.equal(kept.all((-1, -2)), kept.any((-1, -2)))
    assert torch.allclose(drawn.mean(0), x * (1 - p), rtol=0.05)
    assert torch.allclose(mean_inverted, x, rtol=0.05)


def test_dropout_scale_test_puts_vanilla_dropout_and_scales_at_test():
    torch.manual_seed(0)
    model = MLP((1, 4, 4), 3, tanh, depth=2, width=16)
    twin = copy.deepcopy(model)
    Dropout(p=0.4, scale="test").apply(model, nn.Tanh())
    Dropout(p=0.4).apply(twin, nn.Tanh())
    assert isinstance(model.dropout1, VanillaDropout) and isinstance(model.dropout2, VanillaDropout)
    x = torch.randn(8, 1, 4, 4)
    with torch.no_grad():  # at test the vanilla net is the inverted net with the next layer's weights × (1−p)
        for name in ("fc2", "head"):
            twin.get_submodule(name).weight.mul_(0.6)
        assert torch.allclose(model.eval()(x), twin.eval()(x), atol=1e-6)
    with pytest.raises(ValueError, match="^regularizer=dropout: scale=test has no alpha-dropout form"):
        Dropout(p=0.1, scale="test").apply(MLP((1, 4, 4), 3, partial(nn.SELU), depth=1, width=4), nn.SELU())


def test_dropout_places_conv_dropout_and_alpha_dropout_for_selu(caplog):
    convnet = ConvNet((3, 8, 8), 4, partial(nn.ReLU), widths=(8, 16))
    Dropout(p=0.5, conv_p=0.1).apply(convnet, nn.ReLU())
    kinds = [type(m) for m in convnet.modules()]
    assert kinds.count(nn.Dropout2d) == 2 and kinds.count(nn.Dropout) == 1
    resnet = ResNet((3, 8, 8), 4, partial(nn.ReLU), depth=8, width=8)
    Dropout(p=0.5, conv_p=0.1).apply(resnet, nn.ReLU())
    assert all(isinstance(b.dropout, nn.Dropout2d) for b in resnet.modules() if isinstance(b, BasicBlock))
    mlp = MLP((3, 8, 8), 4, partial(nn.SELU), depth=2, width=16)
    with caplog.at_level("INFO", logger="deeprob"):
        Dropout(p=0.1).apply(mlp, nn.SELU())
    assert [type(m) for m in mlp.modules()].count(nn.AlphaDropout) == 2 and "alpha dropout" in caplog.text


def test_dropconnect_masks_weights_in_training_only_and_keeps_the_expected_preactivation():
    torch.manual_seed(0)
    model = MLP((1, 8, 8), 3, tanh, depth=2, width=64)
    keys = list(model.state_dict())
    DropConnect(p=0.4).apply(model, nn.Tanh())
    assert isinstance(model.fc1, DropConnectLinear) and isinstance(model.fc2, DropConnectLinear)
    assert type(model.head) is nn.Linear and list(model.state_dict()) == keys  # the classifier keeps all weights
    layer = model.fc1
    nn.init.zeros_(layer.bias)
    eye = torch.eye(64)
    layer.eval()
    assert torch.equal(layer(eye), layer.weight.detach().t())  # all connections at test
    layer.train()
    masked = layer(eye).detach()
    w = layer.weight.detach().t()
    assert abs((masked == 0).float().mean().item() - 0.4) < 0.02
    assert torch.allclose(masked[masked != 0], w[masked != 0] / 0.6)
    x = torch.randn(32, 64)
    with torch.no_grad():
        mean = torch.stack([layer(x) for _ in range(2000)]).mean(0)
        layer.eval()
        expected = layer(x)
    assert (mean - expected).norm() / expected.norm() < 0.02


def test_dropconnect_per_example_draws_a_mask_per_row():
    torch.manual_seed(0)
    x = torch.randn(1, 32).expand(3000, 32)
    outputs = {}
    for per_example in (False, True):
        layer = DropConnectLinear(32, 8, p=0.4, per_example=per_example).train()
        with torch.no_grad():
            outputs[per_example] = layer(x)
            expected = layer.eval()(x[:1])
        if per_example:
            assert torch.allclose(outputs[True].mean(0, keepdim=True), expected, atol=0.05)
    assert torch.equal(outputs[False], outputs[False][:1].expand_as(outputs[False]))  # one mask per batch
    assert len(torch.unique(outputs[True], dim=0)) > 2900  # a mask per example
    model = MLP((1, 4, 4), 3, tanh, depth=1, width=8)
    DropConnect(p=0.2, per_example=True).apply(model, nn.Tanh())
    assert model.fc1.per_example and model.fc1.p == 0.2


# ---------------------------------------------------------------- fractional pooling, stochastic depth

def test_fractional_pool_shrinks_by_the_ratio_and_averages_the_test_samples():
    torch.manual_seed(0)
    model = ConvNet((3, 32, 32), 5, partial(nn.ReLU), widths=(4, 4, 4), convs_per_stage=1)
    FractionalPool(ratio=2 ** -0.5, test_samples=3).apply(model, nn.ReLU())
    pools = [m for m in model.modules() if isinstance(m, nn.FractionalMaxPool2d)]
    assert len(pools) == 3 and not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    sizes, calls = [], []
    for pool in pools:
        pool.register_forward_hook(lambda m, i, o: sizes.append((i[0].shape[-1], o.shape[-1])))
    pools[0].register_forward_hook(lambda m, i, o: calls.append(1))
    x = torch.randn(4, 3, 32, 32)
    model.train()
    model(x)
    assert sizes == [(32, 22), (22, 15), (15, 10)] and len(calls) == 1  # ⌊side·ratio⌋
    model.eval()
    calls.clear()
    torch.manual_seed(1)
    out = model(x)
    assert len(calls) == 3  # test_samples pooling samples
    assert torch.allclose(out.exp().sum(1), torch.ones(4))  # log of the mean probability
    model.test_samples = 1
    torch.manual_seed(1)
    by_hand = torch.stack([model(x).log_softmax(1) for _ in range(3)]).exp().mean(0).log()
    assert torch.allclose(out, by_hand, atol=1e-6)


def test_stochastic_depth_survival_decays_linearly_and_eval_is_the_whole_network():
    torch.manual_seed(0)
    model = ResNet((3, 8, 8), 4, partial(nn.ReLU), depth=20, width=4)
    plain = copy.deepcopy(model).eval()
    reg = StochasticDepth(final_survival=0.5)
    reg.apply(model, nn.ReLU())
    blocks = [m for m in model.modules() if isinstance(m, BasicBlock)]
    expected = [1 - l / 9 * 0.5 for l in range(1, 10)]
    assert reg.survival(9) == pytest.approx(expected) and expected[-1] == pytest.approx(0.5)
    x = torch.randn(400, 3, 8, 8)
    model.eval()
    assert torch.equal(model(x), plain(x)) and torch.equal(model(x), model(x))
    kept = [[] for _ in blocks]
    for b, block in enumerate(blocks):
        block.stochastic_depth.register_forward_hook(
            lambda m, i, o, b=b: kept[b].append((o.flatten(1) != 0).any(1)))
        block.stochastic_depth.register_forward_hook(
            lambda m, i, o, b=b: kept[b].append(torch.allclose(o[o != 0], (i[0] / (1 - m.p))[o != 0])))
    model.train()
    with torch.no_grad():
        for _ in range(4):
            model(x)
    for b, keep in enumerate(expected):
        rows = torch.cat([k for k in kept[b] if isinstance(k, torch.Tensor)]).float()
        assert abs(rows.mean().item() - keep) < 0.04  # 1600 draws: 3 standard errors
        assert all(k for k in kept[b] if not isinstance(k, torch.Tensor))  # kept branches scaled by 1/survival


@pytest.mark.parametrize("mode", ["row", "batch"])
def test_stochastic_depth_scale_test_is_the_papers_rule_with_the_same_expectation(mode):
    """scale=test: a kept branch passes unscaled in training; at test the branch is × its survival (the expected
    depth); scale=train (torchvision) scales in training instead. Both average to the same branch."""
    torch.manual_seed(0)
    model = ResNet((3, 8, 8), 4, partial(nn.ReLU), depth=8, width=4)
    StochasticDepth(final_survival=0.6, mode=mode, scale="test").apply(model, nn.ReLU())
    layer = model.blocks[-1].stochastic_depth  # the last block survives with final_survival
    assert isinstance(layer, ExpectedDepth) and layer.survival == pytest.approx(0.6) and layer.mode == mode
    inverted = torchvision.ops.StochasticDepth(0.4, mode)
    branch = torch.rand(8, 4, 2, 2) + 0.5
    layer.eval(), inverted.eval()
    assert torch.equal(layer(branch), branch * 0.6) and torch.equal(inverted(branch), branch)
    layer.train(), inverted.train()
    with torch.no_grad():
        drawn = torch.stack([layer(branch) for _ in range(3000)])
        mean_inverted = torch.stack([inverted(branch) for _ in range(3000)]).mean(0)
    kept = drawn.flatten(2).ne(0).any(2)  # (draws, rows)
    assert torch.equal(drawn[kept], branch.expand_as(drawn)[kept])  # unscaled
    if mode == "batch":
        assert torch.equal(kept.all(1), kept.any(1))  # the whole batch together
    assert abs(kept.float().mean().item() - 0.6) < 0.02
    assert torch.allclose(drawn.mean(0), branch * 0.6, rtol=0.06)
    assert torch.allclose(mean_inverted * 0.6, drawn.mean(0), rtol=0.08)


# ---------------------------------------------------------------- batch mixing and soft targets

def test_label_smoothing_targets_follow_the_lecture_formula():
    k, eps = 10, 0.1
    torch.manual_seed(0)
    logits, labels = torch.randn(32, k), torch.randint(0, k, (32,))
    q = torch.full((32, k), eps / k).scatter(1, labels.view(-1, 1), 1 - (k - 1) / k * eps)
    assert torch.allclose(q.sum(1), torch.ones(32)) and q.max().item() == pytest.approx(0.91)
    criterion = loss_function([LabelSmoothing(epsilon=eps)])
    assert torch.allclose(criterion(logits, labels), -(q * logits.log_softmax(1)).sum(1).mean())
    # mixed targets are smoothed the same way: (1−ε)·mixed + ε/K
    mixed = 0.7 * F.one_hot(labels, k) + 0.3 * F.one_hot(labels.roll(1), k)
    smoothed = (1 - eps) * mixed + eps / k
    assert torch.allclose(criterion(logits, mixed.float()), -(smoothed * logits.log_softmax(1)).sum(1).mean())
    assert torch.allclose(loss_function([])(logits, labels), F.cross_entropy(logits, labels))


def _generator():
    return torch.Generator().manual_seed(0)


def test_mixup_blends_images_and_targets_with_the_same_weight():
    torch.manual_seed(0)
    n = 8
    x, labels = torch.rand(n, 3, 4, 4), torch.arange(n)
    out, targets = Mixup(alpha=0.2).mix(x, F.one_hot(labels, n).float(), _generator())
    assert torch.allclose(targets.sum(1), torch.ones(n))
    for i in range(n):
        lam = targets[i, i]
        j = i if lam == 1 else int((targets[i] * (torch.arange(n) != i)).argmax())
        assert torch.allclose(out[i], lam * x[i] + (1 - lam) * x[j], atol=1e-6)
    # λ ~ Beta(a, a): E[λ(1−λ)] = a / (2(2a+1))
    torch.manual_seed(0)
    n = 2000
    _, targets = Mixup(alpha=0.2).mix(torch.zeros(n, 1, 1, 1), torch.eye(n), _generator())
    lam = targets.max(1).values
    assert abs((lam * (1 - lam)).mean().item() - 0.2 / (2 * 1.4)) < 0.006


def test_cutmix_label_weight_is_the_pasted_area():
    torch.manual_seed(0)
    n = 32
    x = torch.arange(n, dtype=torch.float).view(n, 1, 1, 1).expand(n, 3, 16, 16).clone()
    out, targets = CutMix(alpha=1.0).mix(x, torch.eye(n), _generator())
    assert torch.allclose(targets.sum(1), torch.ones(n))
    pasted = (out[:, 0] != x[:, 0]).flatten(1).float().mean(1)
    assert torch.allclose(1 - targets.diagonal(), pasted) and pasted.max() > 0
    for i in torch.nonzero(pasted).flatten():
        j = int(out[i, 0][out[i, 0] != x[i, 0]][0])  # image j holds the value j
        assert targets[i, j] == pasted[i] and (out[i, 0] != x[i, 0]).sum() == (out[i, 0] == j).sum()


def test_cutout_blanks_one_clipped_square_per_image():
    n, side = 4000, 32
    x = torch.ones(n, 3, side, side)
    out, labels = Cutout(size=0.5, fill="zero").mix(x, torch.zeros(n), _generator())
    blanked = (out[:, 0] == 0).flatten(1).sum(1).float()
    assert blanked.min() >= 64 and blanked.max() <= 256 and torch.equal(out[:, 0] == 0, out[:, 2] == 0)
    # centre uniform over the image: each axis covers min(c+8, 32) − max(c−8, 0) pixels on average
    axis = sum(min(c + 8, side) - max(c - 8, 0) for c in range(side)) / side
    assert abs(blanked.mean().item() - axis ** 2) / axis ** 2 < 0.03
    x = torch.rand(n, 3, 8, 8)
    out, _ = Cutout(size=0.25, fill="mean", p=0.5).mix(x, None, _generator())
    touched = (out != x).flatten(1).any(1).float().mean().item()
    assert abs(touched - 0.5) < 0.03
    changed = out != x
    assert torch.allclose(out[changed], x.mean((0, 2, 3), keepdim=True).expand_as(x)[changed])


def test_mixup_and_cutmix_take_turns_and_train_accuracy_counts_the_dominant_label():
    torch.manual_seed(0)
    n = 16
    x = torch.arange(1, n + 1, dtype=torch.float).view(n, 1, 1, 1).expand(n, 1, 8, 8).clone()
    mix = batch_mixer([Mixup(alpha=0.2), CutMix(alpha=1.0)], n)
    generator, values = _generator(), set(x.unique().tolist())
    for call in range(4):
        out, targets, labels = mix(x, torch.arange(n), generator, step=call)
        pasted_only = set(out.unique().tolist()) <= values
        assert pasted_only == (call % 2 == 1)  # mixup blends pixel values, cutmix only moves them
        assert torch.equal(labels, targets.argmax(1))
    out, targets, labels = batch_mixer([Cutout()], n)(x, torch.arange(n), generator)
    assert torch.equal(targets, torch.arange(n)) and torch.equal(labels, torch.arange(n))
