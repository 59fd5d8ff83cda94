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
from deeprob_cli.components.regularizer import (L1, L2, CutMix, Cutout, DropConnect, DropConnectLinear, Dropout,
                                                ElasticNet, FractionalPool, LabelSmoothing, Mixup, StochasticDepth,
                                                batch_mixer, loss_function)
from deeprob_cli.config import CONFIG_DIR, check
from deeprob_cli.evaluate import restore
from deeprob_cli.models import MLP, BasicBlock, ConvNet, ResNet
from deeprob_cli.train import train

OPTIONS = sorted(p.stem for p in (CONFIG_DIR / "regularizer").glob("*.yaml"))
MODELS = {"mlp": ["model.width=32", "model.depth=2"], "convnet": ["model.widths=[8,16]"],
          "resnet": ["model.depth=8", "model.width=8"]}
# (regularizer overrides, model) pairs that cannot apply, and a word of the one-line error
REFUSED = [(["regularizer=stochastic_depth"], "mlp", "residual"), (["regularizer=stochastic_depth"], "convnet", "residual"),
           (["regularizer=dropconnect"], "convnet", "hidden"), (["regularizer=dropconnect"], "resnet", "hidden"),
           (["regularizer=dropconnect", "model.depth=0"], "mlp", "hidden"),
           (["regularizer=fractional_pool"], "mlp", "max-pooling"),
           (["regularizer=fractional_pool"], "resnet", "max-pooling"),
           (["regularizer=dropout", "regularizer.dropout.conv_p=0.2"], "mlp", "conv_p")]
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
    # `deeprob eval` rebuilds the model with the regularizer's changes (fractional pooling's test averaging)
    restored, _ = restore(state, cfg, torch.device("cpu"))
    if option in CHANGED_LAYER:
        assert any(isinstance(m, CHANGED_LAYER[option]) for m in restored.modules())


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


def test_decoupled_decay_shrinks_weights_by_lr_lambda_per_step():
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
    assert torch.allclose(model[0].weight, w0 * (1 - lr * 0.01) ** 3)
    assert torch.equal(model[0].bias, b0)


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
