"""Weight averaging (conf/average/): the EMA and lookahead formulas against hand-computed references, and a run
with averaging interrupted mid-epoch resumes to the same weights, metrics and summary as an uninterrupted one."""
import copy

import pytest
import torch
from torch import nn

from conftest import run_cli, stopped_then_resumed, summary
from deeprob_cli.components.average import Lookahead, ema, lookahead, none


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))


def _perturb(model, step):
    """A stand-in for an optimizer step: every weight and running statistic moves by a known amount."""
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.add_(0.1 * step)


def test_none_evaluates_the_trained_model_and_saves_nothing_extra():
    model = _model()
    average = none(model, 10)
    assert average.model is model and average.state_dict() == {}


def test_ema_follows_its_formula_on_weights_and_batch_norm_statistics():
    model = _model()
    average = ema(model, total_steps=100, decay=0.9, every=2)
    reference = {k: v.clone() for k, v in model.state_dict().items() if v.is_floating_point()}
    first = True
    for step in range(1, 9):
        _perturb(model, step)
        average.update(step)
        if step % 2 == 0:
            for k in reference:  # the first update copies, later ones W̄ ← 0.9·W̄ + 0.1·W
                reference[k] = model.state_dict()[k].clone() if first else 0.9 * reference[k] + 0.1 * model.state_dict()[k]
            first = False
    averaged = average.model.state_dict()
    for k, v in reference.items():
        torch.testing.assert_close(averaged[k], v)
    assert not torch.equal(averaged["0.weight"], model.state_dict()["0.weight"])


def test_ema_start_skips_the_first_steps():
    model = _model()
    average = ema(model, total_steps=10, decay=0.5, start=0.5)
    before = copy.deepcopy(average.model.state_dict())
    for step in range(1, 6):
        _perturb(model, step)
        average.update(step)
    assert all(torch.equal(before[k], v) for k, v in average.model.state_dict().items())
    _perturb(model, 6)
    average.update(6)  # the first update copies the trained weights
    torch.testing.assert_close(average.model.state_dict()["0.weight"], model.state_dict()["0.weight"])


def test_lookahead_moves_slow_weights_by_alpha_every_k_steps_and_resets_the_fast_ones():
    model = _model()
    average = lookahead(model, total_steps=100, every=3, alpha=0.25)
    slow = model.state_dict()["0.weight"].clone()
    for step in range(1, 7):
        _perturb(model, step)
        fast = model.state_dict()["0.weight"].clone()
        average.update(step)
        if step % 3 == 0:
            slow = slow + 0.25 * (fast - slow)
            torch.testing.assert_close(model.state_dict()["0.weight"], slow)  # fast ← slow
        else:
            torch.testing.assert_close(model.state_dict()["0.weight"], fast)  # untouched between syncs
        torch.testing.assert_close(average.model.state_dict()["0.weight"], slow)
    assert not average.model[0].weight.requires_grad


def test_lookahead_ramp_is_airbench_schedule_and_the_last_step_hands_the_slow_weights_over():
    model = _model()
    average = Lookahead(model, total_steps=12, every=5, ramp=0.95)
    assert average.step_size(0) == 1.0
    assert average.step_size(6) == pytest.approx(1 - 0.95 ** 5 * 0.5 ** 3)
    assert average.step_size(12) == pytest.approx(1 - 0.95 ** 5)
    for step in range(1, 13):
        _perturb(model, step)
        average.update(step)
    slow = average.model.state_dict()
    assert all(torch.equal(slow[k], v) for k, v in model.state_dict().items())  # step 12 is off the 5-grid


RUN = ["dataset=synthetic", "dataset.num_train=640", "model.widths=[8,16]", "trainer.epochs=3",
       "trainer.batch_size=32", "log.hist_every=0", "augment=[flip,crop]", "augment.flip.mode=alternate",
       "preprocess=patch_whiten", "preprocess.kernel_size=2", "preprocess.negate=true",
       "preprocess.train_bias_epochs=2", "model.input_activation=true", "optim.norm_bias_lr_scale=4",
       "optim.step_decay=1e-3"]
COMPARED = ("train_loss", "train_acc", "val_loss", "val_acc", "val_acc_tta", "test_acc", "steps")


@pytest.mark.parametrize("average", ["lookahead", pytest.param("ema", marks=pytest.mark.slow)])  # one essential
def test_a_run_with_averaging_resumes_bit_for_bit(tmp_path, monkeypatch, average):
    args = [*RUN, f"average={average}", *(["average.ramp=0.95"] if average == "lookahead" else ["average.decay=0.9"])]
    stopped_then_resumed(tmp_path, monkeypatch, args, step=27)  # mid-epoch 2 (20 steps an epoch), off the
    # lookahead grid: a SIGTERM there
    a, b = summary(tmp_path / "run"), summary(tmp_path / "ref")
    assert {k: a[k] for k in COMPARED} == {k: b[k] for k in COMPARED}
    reached = lambda s: {t for t, seconds in s["seconds_to"].items() if seconds is not None}  # seconds vary
    assert reached(a) == reached(b)
    wa, wb = (torch.load(tmp_path / r / "checkpoints" / "last.pt", weights_only=True) for r in ("run", "ref"))
    for key in ("model", "preprocess"):
        assert all(torch.equal(wa[key][k], wb[key][k]) for k in wb[key])
    trained = wb["average"]["trained"]
    assert all(torch.equal(wa["average"]["trained"][k], trained[k]) for k in trained)
    differs = any(not torch.equal(wb["model"][k], trained[k]) for k in trained if trained[k].is_floating_point())
    assert differs == (average == "ema")  # lookahead hands its slow weights to the trained model at the end


@pytest.mark.parametrize("option", ["average=ema average.every=1000", "average=ema average.start=1.0",
                                    "average=ema average.start=0.9 average.every=20",
                                    "average=lookahead average.every=1000"])
def test_averaging_that_would_never_update_is_refused_before_the_first_step(tmp_path, option):
    """It would evaluate, save and score the initial weights (and lookahead would reset the trained ones to
    them): one line naming the key and the run's step count, exit 2, no checkpoint."""
    key = option.split()[-1].split("=")[0]
    result = run_cli("train", *RUN, *option.split(), "hydra.run.dir=run", cwd=tmp_path, check=False)
    line = result.stderr.strip().splitlines()[-1]
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert line.startswith(f"deeprob train: error: {key}:") and ("last step is 36" in line or "last step 36" in line
                                                                 or "none of the run's 36 steps" in line), line
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_averaging_that_updates_once_at_the_last_step_is_accepted(tmp_path):
    run_cli("train", *RUN, "average=lookahead", "average.every=30", "hydra.run.dir=run", cwd=tmp_path)
    assert summary(tmp_path / "run")["status"] == "completed"


def test_the_last_good_checkpoint_is_finite_in_every_saved_number(tmp_path):
    """lookahead: the evaluated (slow) weights may be finite while the trained ones are not; a run that diverges
    keeps only checkpoints in which every tensor (trained weights, batch-norm statistics, optimizer state) is
    finite."""
    result = run_cli("train", *RUN, "average=lookahead", "average.every=5", "optim.lr=1e37",
                     "trainer.checkpoint_every=1", "log.hist_every=0", "hydra.run.dir=run", cwd=tmp_path, check=False)
    assert result.returncode == 3 and "Traceback" not in result.stderr, result.stderr
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    if last.exists():
        state = torch.load(last, weights_only=True)
        assert all(torch.isfinite(t).all() for t in _tensors({k: state[k] for k in ("model", "average", "optimizer")})
                   if t.is_floating_point())
        assert state["average"]["trained"]  # the trained weights are there and were checked


def _tensors(tree):
    if isinstance(tree, torch.Tensor):
        yield tree
    for value in tree.values() if isinstance(tree, dict) else tree if isinstance(tree, (list, tuple)) else ():
        yield from _tensors(value)


@pytest.mark.parametrize("average,poison", [("lookahead", "trained weight"), ("none", "batch-norm statistic")])
def test_a_checkpoint_with_any_non_finite_tensor_is_refused(tmp_path, monkeypatch, average, poison):
    """Injected after step 3: an infinite trained weight under lookahead (the evaluated slow weights stay finite)
    or an infinite batch-norm running variance in a plain run (a buffer, not a parameter). The checkpoint of step 3
    is refused, the run ends as diverged, and the kept last.pt (step 2) is finite in every tensor."""
    import deeprob_cli.train as train_module

    original = train_module.train_step

    def step(job, run, **kwargs):
        original(job, run, **kwargs)
        if run.progress.step == 3:
            if poison == "trained weight":
                next(job.model.parameters()).data.fill_(float("inf"))
            else:
                next(b for n, b in job.model.named_buffers() if n.endswith("running_var")).fill_(float("inf"))

    monkeypatch.setattr(train_module, "train_step", step)
    result = run_cli("train", *RUN, f"average={average}", "trainer.checkpoint_every=1", "hydra.run.dir=run",
                     cwd=tmp_path, check=False)
    assert result.returncode == 3 and "Traceback" not in result.stderr, result.stderr
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert state["progress"]["step"] == 2
    assert all(torch.isfinite(t).all() for t in _tensors({k: state[k] for k in ("model", "average", "optimizer")})
               if t.is_floating_point())
