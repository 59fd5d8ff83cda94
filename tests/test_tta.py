"""Test-time augmentation (conf/tta/): the views each option makes, the softmax average evaluate() takes,
and the figures train and eval report with and without it."""
import json

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from conftest import FAST, run_cli, summary
from deeprob_cli.components import tta as T
from deeprob_cli.components.preprocess import Identity
from deeprob_cli.config import CONFIG_DIR, build, option_names
from deeprob_cli.data import Split
from deeprob_cli import UserError
from deeprob_cli.evaluate import evaluate, pick_tta

OPTIONS = option_names("tta")
VIEWS = {"none": 1, "flip": 2, "multicrop": 10, "mc_dropout": 10, "multiscale": 30, "flip_translate": 6}


def split(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return Split((torch.rand(n, 3, 16, 16, generator=g) * 255).to(torch.uint8), torch.randint(0, 4, (n,), generator=g))


def small_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 16 * 16, 4))


@pytest.mark.parametrize("name", OPTIONS)
def test_every_option_makes_its_views_at_the_input_size(name):
    tta = build(OmegaConf.load(CONFIG_DIR / "tta" / f"{name}.yaml"), "tta")
    x = split().images.float() / 255
    views = tta(x)
    assert len(views) == VIEWS[name]
    assert all(v.shape == x.shape for v in views)
    assert torch.equal(views[0], x) or name in ("multicrop", "multiscale")
    if name == "flip":
        assert torch.equal(views[1], x.flip(3))


class Symmetric(nn.Module):
    """Mirror-symmetric by construction: f(x) = g(x) + g(flip(x))."""

    def __init__(self):
        super().__init__()
        self.g = small_model()

    def forward(self, x):
        return self.g(x) + self.g(x.flip(3))


def test_flip_on_a_mirror_symmetric_model_equals_no_tta():
    model, data = Symmetric(), split()
    assert evaluate(model, data, Identity(), "cpu", 16, T.Flip()) == evaluate(model, data, Identity(), "cpu", 16)


def test_flip_averages_the_softmax_of_the_image_and_its_mirror():
    """On an asymmetric model: the loss is that of the mean of the two softmaxes (a TTA returning [x, x]
    would give the plain figures instead)."""
    model, data = small_model(), split()
    x = data.images.float() / 255
    with torch.no_grad():
        probs = (F.softmax(model(x), 1) + F.softmax(model(x.flip(3)), 1)) / 2
    loss, acc = evaluate(model, data, Identity(), "cpu", 16, T.Flip())
    assert loss == pytest.approx(F.nll_loss(probs.log(), data.labels).item(), rel=1e-5)
    assert acc == (probs.argmax(1) == data.labels).float().mean().item()
    assert loss != pytest.approx(evaluate(model, data, Identity(), "cpu", 16)[0], rel=1e-3)


def test_multiscale_crops_are_boxes_of_the_enlarged_image():
    """At scale s a view is an h×w crop of the image resized by s: at s = 2 the top-left view is the top-left
    quarter upsampled ×2, and the centre view of s = 1 is the image itself."""
    x = split(n=4).images.float() / 255
    tta = T.MultiScale(scales=[1.0, 2.0])
    views = tta(x)
    assert len(views) == 20 and all(v.shape == x.shape for v in views)
    assert torch.allclose(views[4], x, atol=1e-6)  # s = 1, centre
    assert torch.allclose(views[14], x.flip(3), atol=1e-6)  # its mirror
    quarter = x[..., :8, :8]
    expected = F.interpolate(quarter, scale_factor=2, mode="bilinear", align_corners=False)
    assert torch.allclose(views[5][..., 1:-1, 1:-1], expected[..., 1:-1, 1:-1], atol=1e-5)  # s = 2, top-left
    centre = x[..., 4:12, 4:12]
    expected = F.interpolate(centre, scale_factor=2, mode="bilinear", align_corners=False)
    assert torch.allclose(views[9][..., 1:-1, 1:-1], expected[..., 1:-1, 1:-1], atol=1e-5)  # s = 2, centre
    with pytest.raises(ValueError, match=r"^scales: \[0\.5\] is not allowed"):
        T.MultiScale(scales=[0.5])


class DropoutNet(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 64), nn.ReLU())
        self.dropout = nn.Dropout(0.5)
        self.bn = nn.BatchNorm1d(64)
        self.head = nn.Linear(64, 4)

    def forward(self, x):
        return self.head(self.bn(self.dropout(self.body(x))))


def test_mc_dropout_averages_stochastic_passes_with_batch_norm_frozen():
    """tta=mc_dropout: the mean softmax of N passes with fresh dropout masks and batch norm on its running
    statistics; repeatable; the model is back in eval mode afterwards."""
    model, data = DropoutNet(), split()
    model.bn.running_mean.fill_(0.3)  # batch statistics would differ from these
    tta = T.MCDropout(samples=5, seed=3)
    loss, acc = evaluate(model, data, Identity(), "cpu", 64, tta)
    assert not model.training and not model.dropout.training
    assert (loss, acc) == evaluate(model, data, Identity(), "cpu", 64, tta)  # repeatable
    x = data.images.float() / 255
    torch.manual_seed(3)
    model.dropout.train()
    with torch.no_grad():
        probs = torch.stack([F.softmax(model(x), 1) for _ in range(5)]).mean(0)
    model.eval()
    assert loss == pytest.approx(F.nll_loss(probs.log(), data.labels).item(), rel=1e-5)
    plain = evaluate(model, data, Identity(), "cpu", 64)
    assert loss != pytest.approx(plain[0], rel=1e-3)  # the passes were stochastic, not the weight-scaled one
    many = evaluate(model, data, Identity(), "cpu", 64, T.MCDropout(samples=400))
    assert abs(many[0] - plain[0]) < 0.1 * plain[0]  # many passes ≈ the weight-scaling rule (Srivastava §7.5)


@pytest.mark.parametrize("fill", ["reflect", "resize"])
def test_multicrop_averages_the_softmax_of_ten_views(fill):
    model, data = small_model(), split()
    tta = T.MultiCrop(size=0.75, fill=fill)
    x = data.images.float() / 255
    crops = [x[..., :12, :12], x[..., :12, 4:], x[..., 4:, :12], x[..., 4:, 4:], x[..., 2:14, 2:14]]
    assert all(torch.equal(a, b) for a, b in zip(tta.crops(x), crops))
    if fill == "reflect":
        assert all(torch.equal(v[..., 2:14, 2:14], c) for v, c in zip(tta(x), crops))  # padded around the crop
    views = [tta.restore(c, 16, 16) for c in crops]
    views += [v.flip(3) for v in views]
    with torch.no_grad():
        probs = torch.stack([F.softmax(model(v), 1) for v in views]).mean(0)
    loss, acc = evaluate(model, data, Identity(), "cpu", 16, tta)
    assert acc == (probs.argmax(1) == data.labels).float().mean().item()
    assert loss == pytest.approx(F.nll_loss(probs.log(), data.labels).item(), rel=1e-5)


def test_mc_dropout_scores_of_a_run_are_repeated_by_deeprob_eval(tmp_path):
    """Train with dropout and tta=mc_dropout (in-process): summary.json's val_acc_tta comes back from `deeprob eval`
    (seeded masks), and differs from what the plain weight-scaled pass gives on the loss."""
    from conftest import make_cfg
    from deeprob_cli.evaluate import run_eval
    from deeprob_cli.train import train

    cfg = make_cfg("dataset=synthetic", "dataset.num_train=256", "dataset.val_size=128", "dataset.num_test=0",
                   "dataset.image_size=8", "trainer.epochs=1", "trainer.batch_size=64", "log.hist_every=0",
                   "trainer.device=cpu", "model=mlp", "model.width=32", "model.depth=2", "regularizer=dropout",
                   "tta=mc_dropout", "tta.samples=4")
    train(cfg, tmp_path, choices={"tta": "mc_dropout", "regularizer": ["dropout"]})
    s = summary(tmp_path)
    result = run_eval([str(tmp_path)])
    assert result["tta"] == "mc_dropout" and result["accuracy_tta"] == s["val_acc_tta"]
    assert result["accuracy"] == s["val_acc"] and result["loss_tta"] != result["loss"]


def test_train_and_eval_report_accuracy_with_and_without_tta(tmp_path):
    run_cli("train", *FAST, "tta=flip", "hydra.run.dir=run", cwd=tmp_path)
    s = summary(tmp_path / "run")
    assert {"val_acc", "val_acc_tta", "test_acc", "test_acc_tta"} <= s.keys()
    assert s["choices"]["tta"] == "flip"
    run_cli("eval", "run", cwd=tmp_path)
    result = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert result["tta"] == "flip"
    assert (result["accuracy"], result["accuracy_tta"]) == (s["val_acc"], s["val_acc_tta"])
    run_cli("eval", "run", "split=test", "tta=multicrop", cwd=tmp_path)
    result = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert (result["tta"], result["accuracy"]) == ("multicrop", s["test_acc"])
    with pytest.raises(UserError, match="^tta: 'five' is not one of flip, flip_translate, mc_dropout, multicrop, multiscale, none$"):
        pick_tta({}, OmegaConf.create({}), "five")
