"""optim=muon (components.optim.Muon): the update of a matrix is torch.optim.Muon's, orthogonalized (singular
values near 1, the singular vectors of the gradient); conv filters are Muon's on the filter viewed as a matrix, in
either memory layout; the other groups are torch's Nesterov SGD with their own lr and decay; a run interrupted
mid-epoch resumes bit for bit; a model without conv filters is refused in one line before any work."""
import pytest
import torch
from torch import nn

from conftest import make_cfg, run_cli, stopped_then_resumed, summary
from deeprob_cli import UserError
from deeprob_cli.components.optim import Muon, as_matrix, param_groups
from deeprob_cli.config import check
from deeprob_cli.models import ConvNet


def _convnet():
    torch.manual_seed(0)
    return ConvNet((3, 16, 16), 10, nn.GELU, widths=(8, 16), norm_affine_scale=False, head_bias=False)


def test_one_step_on_a_matrix_is_an_orthogonalized_gradient():
    """From a zero momentum buffer, the step is −lr·NS(G): its singular values lie near 1 (the quintic's
    ≈ 0.7–1.2 band, Jordan 2024), and its singular vectors are G's (U·diag(s')·Vᵀ)."""
    torch.manual_seed(0)
    weight = nn.Parameter(torch.randn(8, 24))
    weight.grad = torch.randn(8, 24) * 1e-3  # NS normalizes: the gradient's scale does not matter
    opt = Muon([weight], lr=0.1, normalize=False, matrices="all")
    before = weight.detach().clone()
    opt.step()
    update = (before - weight.detach()) / 0.1
    s = torch.linalg.svdvals(update)
    assert s.min() > 0.6 and s.max() < 1.25, s
    u, _, vh = torch.linalg.svd(weight.grad, full_matrices=False)
    inside = u.T @ update @ vh.T  # diagonal with s' on it, if update shares G's singular vectors
    off = inside - torch.diag(torch.diagonal(inside))
    assert off.abs().max() < 0.05 and torch.diagonal(inside).min() > 0.6


def test_conv_filters_take_torch_muons_step_on_the_filter_viewed_as_a_matrix():
    """Three steps with momentum: the filter equals torch.optim.Muon run on the (out, in·k·k) matrix, bit for bit
    in NCHW; in channels_last (columns permuted, another summation order in bf16) equal to bf16 precision."""
    torch.manual_seed(0)
    start, grads = torch.randn(16, 8, 3, 3), [torch.randn(16, 8, 3, 3) for _ in range(3)]
    reference = nn.Parameter(start.reshape(16, -1).clone())
    theirs = torch.optim.Muon([reference], lr=0.24, momentum=0.6, nesterov=True, weight_decay=0.0)
    for layout in (torch.contiguous_format, torch.channels_last):
        filt = nn.Parameter(start.clone().contiguous(memory_format=layout))
        ours = Muon([filt], lr=0.24, momentum=0.6, normalize=False)
        for g in grads:
            filt.grad = g.contiguous(memory_format=layout)
            ours.step()
        assert filt.is_contiguous(memory_format=layout)  # updated in place, in its own layout
        if layout == torch.contiguous_format:
            for g in grads:
                reference.grad = g.reshape(16, -1)
                theirs.step()
            assert torch.equal(filt.detach().reshape(16, -1), reference.detach())
        else:
            torch.testing.assert_close(filt.detach().reshape(16, -1), reference.detach(), atol=2e-2, rtol=0)
    buffer = ours.state[filt]["momentum_buffer"]
    assert buffer.shape == filt.shape and buffer.is_contiguous(memory_format=torch.channels_last)


def test_normalize_pins_each_filter_to_norm_sqrt_rows_before_its_step():
    torch.manual_seed(0)
    filt = nn.Parameter(torch.randn(4, 2, 3, 3) * 7)
    filt.grad = torch.randn_like(filt)
    Muon([filt], lr=1e-9).step()  # a negligible step: the filter is its normalized self
    assert filt.detach().norm().item() == pytest.approx(4 ** 0.5, rel=1e-5)


def test_groups_filters_head_biases_and_the_sgd_groups_are_torch_nesterov_sgd():
    model = _convnet()
    groups = param_groups(model, batch_size=500)
    opt = Muon(iter(groups), lr=0.24, head_lr=1.5, bias_lr=90.0, sgd_momentum=0.85, step_decay=2e-3)
    roles = {g["role"]: g for g in opt.param_groups}
    assert list(roles) == ["matrices", "head", "bias"]
    assert all(p.dim() == 4 for p in roles["matrices"]["params"]) and len(roles["matrices"]["params"]) == 4
    assert [p.shape for p in roles["head"]["params"]] == [model.head.weight.shape]
    assert all(p.dim() == 1 for p in roles["bias"]["params"])
    for role, lr in (("head", 1.5), ("bias", 90.0)):  # batch-scaled decay: lr·wd = step_decay·500/1024
        assert roles[role]["lr"] == lr and roles[role]["lr"] * roles[role]["weight_decay"] == pytest.approx(
            2e-3 * 500 / 1024)
    twin = _convnet()
    sgd = torch.optim.SGD([{"params": [twin.head.weight], "lr": 1.5, "weight_decay": roles["head"]["weight_decay"]},
                           {"params": [p for p in twin.parameters() if p.dim() == 1 and p.requires_grad],
                            "lr": 90.0, "weight_decay": roles["bias"]["weight_decay"]}],
                          momentum=0.85, nesterov=True)
    x = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    for _ in range(2):
        for net, o in ((model, opt), (twin, sgd)):
            o.zero_grad()
            net(x).logsumexp(1).mean().backward()
            o.step()
            if o is sgd:  # the twin's filters: leave them at the model's, so both see the same forward pass
                with torch.no_grad():
                    for a, b in zip(model.parameters(), twin.parameters()):
                        if a.dim() == 4:
                            b.copy_(a)
    assert torch.equal(model.head.weight, twin.head.weight)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), twin.parameters()) if a.dim() == 1)


def test_as_matrix_is_a_view_in_both_layouts():
    for layout in (torch.contiguous_format, torch.channels_last):
        t = torch.zeros(4, 3, 2, 2).contiguous(memory_format=layout)
        as_matrix(t).add_(1)
        assert as_matrix(t).shape == (4, 12) and bool((t == 1).all())


REFUSAL = ("optim=muon: trains conv filters (weights with ≥ 3 dims) and model MLP has none (model.norm=none); "
           "use model=convnet or model=resnet, or optim.matrices=all (Muon on 2-D weights too)")


def test_a_model_without_conv_filters_is_refused_in_one_line_and_matrices_all_takes_it():
    with pytest.raises(UserError) as e:
        check(make_cfg("dataset=synthetic", "model=mlp", "optim=muon"))
    assert str(e.value) == REFUSAL
    check(make_cfg("dataset=synthetic", "model=mlp", "optim=muon", "optim.matrices=all"))
    mlp = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    with pytest.raises(ValueError, match=r"^matrices: 'filters' selects no parameter"):
        Muon(mlp.parameters())
    opt = Muon(mlp.parameters(), matrices="all")
    assert [g["role"] for g in opt.param_groups] == ["matrices", "bias"]


def test_cli_refuses_muon_on_an_mlp_before_any_work(tmp_path):
    result = run_cli("train", "dataset=synthetic", "model=mlp", "optim=muon", "hydra.run.dir=run", cwd=tmp_path,
                     check=False)
    assert result.returncode == 2 and not (tmp_path / "run").exists()
    assert result.stderr.strip().splitlines() == [
        f"deeprob train: error: {REFUSAL}"]


RUN = ["dataset=synthetic", "dataset.num_train=640", "model.widths=[8,16]", "trainer.epochs=3",
       "trainer.batch_size=32", "log.hist_every=0", "optim=muon", "preprocess=patch_whiten",
       "preprocess.kernel_size=2", "preprocess.negate=true", "preprocess.train_bias_epochs=2",
       "model.input_activation=true", "model.norm_affine_scale=false", "schedule=linear", "schedule.warmup=0",
       "schedule.start=1", "schedule.end=0", "trainer.precision=bf16", "trainer.channels_last=true",
       "optim.bias_lr=2.0", "optim.head_lr=0.1"]
COMPARED = ("train_loss", "train_acc", "val_loss", "val_acc", "test_acc", "steps")


def test_a_muon_run_interrupted_mid_epoch_resumes_bit_for_bit(tmp_path, monkeypatch):
    """SIGTERM at step 27 (mid-epoch 2, the whitening bias still trained), resume: metrics, weights and every
    momentum buffer equal the uninterrupted run's (bf16 and channels_last, as experiment=fast runs)."""
    stopped_then_resumed(tmp_path, monkeypatch, RUN, step=27)
    a, b = summary(tmp_path / "run"), summary(tmp_path / "ref")
    assert a["status"] == "completed" and {k: a[k] for k in COMPARED} == {k: b[k] for k in COMPARED}
    wa, wb = (torch.load(tmp_path / r / "checkpoints" / "last.pt", weights_only=True) for r in ("run", "ref"))
    assert all(torch.equal(wa["model"][k], wb["model"][k]) for k in wb["model"])
    sa, sb = wa["optimizer"]["state"], wb["optimizer"]["state"]
    assert sa.keys() == sb.keys() and len(sa) >= 4  # the filters' Muon buffers and the SGD groups' buffers
    assert all(torch.equal(sa[k]["momentum_buffer"], sb[k]["momentum_buffer"]) for k in sb)
    assert [g["role"] for g in wb["optimizer"]["param_groups"]] == ["matrices", "head", "bias"]
