"""The fast-recipe options of the ordinary groups, each against a formula or a reference: SGD's per-group lr and
batch-scaled weight decay, schedule=linear, init.dirac, convnet's norm/head/block-order options, flip's alternate
mode, patch_whiten's ± channels/padding/trainable bias, tta=flip_translate, and summary.json's seconds_to."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deeprob_cli.components.augment import Compose, Flip
from deeprob_cli.components.init import default as init_default
from deeprob_cli.components.optim import SGD, param_groups
from deeprob_cli.components.preprocess import PatchWhiten
from deeprob_cli.components.schedule import linear
from deeprob_cli.components.tta import FlipTranslate
from deeprob_cli.evaluate import evaluate
from deeprob_cli.models import ConvNet
from deeprob_cli.run import Progress


def _convnet(**kw):
    torch.manual_seed(0)
    return ConvNet((3, 16, 16), 10, nn.ReLU, widths=(8, 16), **kw)


def test_sgd_groups_norm_biases_lr_and_decays_every_group_by_step_decay_times_batch():
    model = _convnet(norm_affine_scale=False)
    groups = param_groups(model, batch_size=512)
    assert [g["role"] for g in groups] == ["weights", "norm_bias"]
    frozen = {id(m.weight) for m in model.modules() if isinstance(m, nn.BatchNorm2d)}
    assert not frozen & {id(p) for g in groups for p in g["params"]}  # frozen scales are not trained
    opt = SGD(iter(groups), lr=0.5, momentum=0.85, nesterov=True, norm_bias_lr_scale=64, step_decay=2e-3)
    assert [g["lr"] for g in opt.param_groups] == [0.5, 32.0]
    before = [p.detach().clone() for g in opt.param_groups for p in g["params"]]
    for g in opt.param_groups:
        for p in g["params"]:
            p.grad = torch.zeros_like(p)  # no loss gradient: the step is the decay alone
    opt.step()
    after = [p.detach() for g in opt.param_groups for p in g["params"]]
    nesterov = 1 + 0.85  # Nesterov's first step: g + momentum·buf with buf = g
    for b, a in zip(before, after):  # shrink = lr·wd·(1+m) = step_decay·(512/1024)·(1+m), whatever the group's lr
        torch.testing.assert_close(a, b * (1 - 2e-3 * 0.5 * nesterov))


def test_plain_sgd_is_unchanged_by_the_groups():
    model = _convnet()
    ours = SGD(iter(param_groups(model)), lr=0.1, momentum=0.9, nesterov=True)
    torch.manual_seed(1)
    x = torch.randn(4, 3, 16, 16)
    twin = _convnet()
    theirs = torch.optim.SGD(twin.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    for net, opt in ((model, ours), (twin, theirs)):
        net(x).square().mean().backward()
        opt.step()
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), twin.state_dict().values()))


def test_linear_schedule_matches_numpy_interp_at_the_knots():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=2.0)
    schedule = linear(opt, total_steps=100, warmup=0.23, start=0.2, peak=1.0, end=0.07)
    lrs = []
    for _ in range(101):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        schedule.step()
    assert lrs[0] == pytest.approx(0.4) and lrs[23] == pytest.approx(2.0) and lrs[100] == pytest.approx(0.14)
    assert lrs[61] == pytest.approx(2.0 * np.interp(61, [0, 23, 100], [0.2, 1.0, 0.07]))


def test_dirac_start_passes_the_first_channels_through_each_conv():
    model = _convnet(norm="none")
    init_default(model, dirac=True)
    conv = model.conv1_2  # 8 → 8 channels: all filters identity
    x = torch.randn(2, 8, 6, 6)
    torch.testing.assert_close(F.conv2d(x, conv.weight, padding=1), x)
    wide = model.conv2_1  # 8 → 16: the first 8 pass their channel through, the others keep torch's init
    out = F.conv2d(x, wide.weight, padding=1)
    torch.testing.assert_close(out[:, :8], x)
    assert out[:, 8:].abs().sum() > 0


def test_norm_options_reach_batch_norm():
    model = _convnet(norm_eps=1e-12, norm_momentum=0.4, norm_affine_scale=False)
    bn = model.norm1_1
    assert bn.eps == 1e-12 and bn.momentum == 0.4 and not bn.weight.requires_grad and bn.bias.requires_grad
    bn.train()
    x = torch.randn(16, 8, 4, 4) * 3 + 2
    bn(x)  # running mean ← 0.6·0 + 0.4·batch mean
    torch.testing.assert_close(bn.running_mean, 0.4 * x.mean((0, 2, 3)))


def test_pool_before_norm_order_and_head_options():
    model = _convnet(pool="first", block_order="conv_pool_norm_act", head_pool="max", head_bias=False,
                     logit_scale=1 / 9)
    names = [n for n, _ in model.named_children()]
    assert names[:5] == ["conv1_1", "pool1", "norm1_1", "act1_1", "conv1_2"]
    assert model.head.bias is None and isinstance(model.gap, nn.AdaptiveMaxPool2d)
    model.eval()
    x = torch.randn(3, 3, 16, 16)
    features = nn.Sequential(*list(model.children())[:names.index("gap")])(x)
    torch.testing.assert_close(model(x), features.amax((2, 3)) @ model.head.weight.T / 9)


def test_alternate_flip_is_random_in_epoch_one_then_flips_each_image_every_other_epoch():
    n = 2000
    images = torch.zeros(n, 1, 1, 2, dtype=torch.uint8)
    x = torch.tensor([0.0, 1.0]).view(1, 1, 1, 2).expand(n, 1, 1, 2)
    index = torch.randperm(n)
    aug = Compose([Flip(mode="alternate").fit(images)])
    g = torch.Generator().manual_seed(7)
    flipped = {e: aug(x, g, indices=index, epoch=e)[:, 0, 0, 0] == 1 for e in (1, 2, 3)}
    assert 0.45 < flipped[1].float().mean() < 0.55
    assert torch.equal(flipped[2], ~flipped[1]) and torch.equal(flipped[3], flipped[1])
    again = Compose([Flip(mode="alternate").fit(images)])  # a resumed run: the same bits from the same seed
    assert torch.equal(again(x, torch.Generator().manual_seed(7), indices=index, epoch=3)[:, 0, 0, 0] == 1, flipped[3])
    other = aug(x, torch.Generator().manual_seed(8), indices=index, epoch=1)[:, 0, 0, 0] == 1
    assert not torch.equal(other, flipped[1])


def test_patch_whiten_negated_channels_unpadded_maps_and_a_bias_trained_for_n_epochs():
    torch.manual_seed(0)
    images = (torch.rand(400, 3, 8, 8) * 255).to(torch.uint8)
    plain = PatchWhiten(kernel_size=2, eps=1e-4).fit(images)
    pm = PatchWhiten(kernel_size=2, eps=1e-4, negate=True, train_bias_epochs=2, padding="none").fit(images)
    assert pm.output_shape((3, 8, 8)) == (24, 7, 7)
    x = images[:5].float() / 255
    out = pm(x)
    assert out.shape == (5, 24, 7, 7)
    torch.testing.assert_close(out[:, 12:], -out[:, :12])
    torch.testing.assert_close(out[:, :12], plain(x)[:, :12, :7, :7])  # 'none' = the same patches, uncropped
    assert isinstance(pm.bias, nn.Parameter) and not pm.bias.requires_grad
    trained = [pm.set_epoch(e) or pm.bias.requires_grad for e in (1, 2, 3)]
    assert trained == [True, True, False]
    assert any(p is pm.bias for p in param_groups(nn.Linear(1, 1), pm)[0]["params"])
    restored = PatchWhiten(kernel_size=2, negate=True, train_bias_epochs=2, padding="none")
    restored.load_state_dict(pm.state_dict())
    torch.testing.assert_close(restored(x), out)


def test_flip_translate_views_and_weighted_logit_average():
    tta = FlipTranslate(shift=1, center_weight=0.5)
    x = torch.arange(2 * 3 * 5 * 5, dtype=torch.float).view(2, 3, 5, 5)
    views = tta(x)
    assert len(views) == 6 and torch.equal(views[1], x.flip(3))
    torch.testing.assert_close(views[2][..., 1:, 1:], x[..., :-1, :-1])  # shifted down-right by 1 px
    torch.testing.assert_close(views[3][..., :-1, :-1], x[..., 1:, 1:])  # up-left
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(75, 4))
    from deeprob_cli.data import Split

    images = (torch.rand(6, 3, 5, 5) * 255).to(torch.uint8)
    split = Split(images, torch.tensor([0, 1, 2, 3, 0, 1]))
    loss, _ = evaluate(model, split, nn.Identity(), "cpu", 6, tta)
    v = tta(images.float() / 255)
    logits = 0.25 * (model(v[0]) + model(v[1])) + 0.125 * sum(model(u) for u in v[2:])
    assert loss == pytest.approx(F.cross_entropy(logits, split.labels).item(), rel=1e-5)


def test_seconds_to_records_the_first_epoch_reaching_each_target_and_survives_a_checkpoint():
    p = Progress()
    for seconds, acc in ((10.0, 0.80), (20.0, 0.86), (30.0, 0.85), (40.0, 0.91)):
        p.train_seconds = seconds
        p.end_epoch(1.0, {"train/acc": 0.5, "val/acc": acc})
    assert p.seconds_to == {85: 20.0, 87: 40.0, 90: 40.0}
    restored = Progress.restore(p.state(0.0), "cpu")
    restored.train_seconds = 50.0
    restored.end_epoch(1.0, {"train/acc": 0.5, "val/acc": 0.95})
    assert restored.seconds_to == {85: 20.0, 87: 40.0, 90: 40.0, 94: 50.0}
