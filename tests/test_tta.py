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
from deeprob_cli.config import CONFIG_DIR, build
from deeprob_cli.data import Split
from deeprob_cli import UserError
from deeprob_cli.evaluate import evaluate, pick_tta

OPTIONS = sorted(p.stem for p in (CONFIG_DIR / "tta").glob("*.yaml"))
VIEWS = {"none": 1, "flip": 2, "multicrop": 10}


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
    assert torch.equal(views[0], x) or name == "multicrop"


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
    with pytest.raises(UserError, match="^tta: 'five' is not one of flip, multicrop, none$"):
        pick_tta({}, OmegaConf.create({}), "five")
