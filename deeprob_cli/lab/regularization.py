"""The lecture's regularization and normalization-layer claims, each declared next to its measure. Try: deeprob lab dropout dataset=synthetic lab.scale=0.05"""
import math

import torch

from .. import stats
from .bench import assemble_model, bars, calibration_error, figure, fit, save, scores, setting
from .claim import Test, claim
from .inputs import OVERFITS, SMALL, train_small

DROPOUT_MLP = ["experiment=lab_mlp", "model.depth=2", "model.width=512"]


@claim("dropout", "Dropout is a regularizer: it narrows the gap between training and validation accuracy.",
       """A 2-layer MLP (512 units) on 1,000 training images, 600 SGD steps (lr 0.01, ≈38 epochs: the plain net
       overfits), without and with dropout (p = 0.5). Per seed the gap = accuracy on the training subset (eval
       mode) − validation accuracy (1,000 images). Effect: the plain net's gap − the dropout net's.""",
       {"narrower_gap": Test(+1, "Srivastava et al. 2014, Fig. 9 / §7.1: dropout raises training error and lowers "
                                 "test error (direction; no gap size for this setting)", unit="accuracy gap")},
       compares=("regularizer",))
def dropout(ctx):
    s = setting(ctx.cfg(*DROPOUT_MLP), ctx.n(1000, 64), ctx.n(1000, 32))
    gap, val = {"none": [], "dropout": []}, {"none": [], "dropout": []}
    for seed in ctx.seeds:
        for name in gap:
            assembly = assemble_model(ctx.cfg(*DROPOUT_MLP, f"regularizer={'none' if name == 'none' else '[dropout]'}"),
                                      s, seed)
            fit(assembly, s, steps=ctx.n(600, 4), lr=0.01, seed=seed)
            v = scores(assembly.model, s, s.val)["acc"]
            gap[name].append(scores(assembly.model, s, s.train)["acc"] - v)
            val[name].append(v)
    fig, axes = figure(1, 2, size=(10, 4))
    bars(axes[0, 0], gap, "training − validation accuracy")
    bars(axes[0, 1], val, "validation accuracy")
    save(fig, ctx.folder, "dropout: generalization gap without and with dropout")
    return {"narrower_gap": (gap["none"], gap["dropout"])}, {"gap": gap, "val_acc": val}


MC_SAMPLES = 50  # Srivastava et al. 2014, Fig. 11: Monte-Carlo averaging matches weight scaling from ≈50 samples
EQUIVALENT = 0.01  # accuracy margin of "equivalent"


@claim("dropout_test_time", "Inverted dropout: at test time use the whole network unscaled; this approximates "
       "averaging the predictions of all thinned networks.",
       """The dropout MLP of `dropout` (p = 0.5, 400 steps), per seed: validation accuracy of the whole network in
       eval mode (what inverted dropout's training-time 1/(1−p) scaling makes correct) vs the average of the
       predicted probabilities of 50 random thinned networks. Equivalence within 1 point: both one-sided
       intervals (eval − MC + 0.01 and MC − eval + 0.01) above 0. The exact part is reported: the mean of the
       classifier's output over 1,000 masks of its input equals the unmasked output up to Monte-Carlo error.""",
       {"not_worse_than_mc": Test(+1, "Srivastava et al. 2014, Fig. 11: weight scaling's test error equals Monte-Carlo "
                                      "averaging's with ≥ 50 samples (a difference of 0)", literature=EQUIVALENT,
                                  unit="acc(eval) − acc(MC) + 0.01", margin=EQUIVALENT),
        "not_better_than_mc": Test(+1, "Srivastava et al. 2014, Fig. 11 (as above)", literature=EQUIVALENT,
                                   unit="acc(MC) − acc(eval) + 0.01", margin=EQUIVALENT)},
       compares=("regularizer",))
def dropout_test_time(ctx):
    s = setting(ctx.cfg(*DROPOUT_MLP), ctx.n(1000, 64), ctx.n(1000, 32))
    x = s.x(s.val)
    eval_acc, mc_acc, head_error = [], [], []
    for seed in ctx.seeds:
        assembly = assemble_model(ctx.cfg(*DROPOUT_MLP, "regularizer=[dropout]"), s, seed)
        model = assembly.model
        fit(assembly, s, steps=ctx.n(400, 4), lr=0.01, seed=seed)
        eval_acc.append(scores(model, s, s.val)["acc"])
        torch.manual_seed(seed)
        with torch.no_grad():
            model.train()  # no batch norm in this MLP: train mode differs only by the dropout masks
            probs = sum(model(x).softmax(1) for _ in range(MC_SAMPLES)) / MC_SAMPLES
            mc_acc.append((probs.argmax(1) == s.val.labels).float().mean().item())
            body = torch.nn.Sequential(*list(model)[:-2]).eval()(x)  # the classifier's input; the slot before it drops with p
            slot = model[-2].train()
            average = sum(model.head(slot(body)) for _ in range(1000)) / 1000
            exact = model.head(body)
            head_error.append(((average - exact).norm() / exact.norm()).item())
    fig, axes = figure(1, 1)
    bars(axes[0, 0], {"eval mode (weight scaling)": eval_acc, f"MC average of {MC_SAMPLES}": mc_acc},
         "validation accuracy")
    axes[0, 0].set_ylim(min(eval_acc + mc_acc) - 0.05, max(eval_acc + mc_acc) + 0.05)
    save(fig, ctx.folder, "dropout_test_time: the whole network vs the average of thinned networks")
    samples = {"not_worse_than_mc": (eval_acc, mc_acc), "not_better_than_mc": (mc_acc, eval_acc)}
    return samples, {"eval_acc": eval_acc, "mc_acc": mc_acc, "head_relative_error_1000_masks": head_error}


REGULARIZERS = {"cutout": ["regularizer=[cutout]"], "mixup": ["regularizer=[mixup]", "regularizer.mixup.alpha=1.0"],
                "cutmix": ["regularizer=[cutmix]"], "label_smoothing": ["regularizer=[label_smoothing]"]}
LITERATURE = {"cutout": "DeVries & Taylor 2017, Table 1: 4.72 → 3.99 % error on top of flip + crop (ResNet-18)",
              "mixup": "Zhang et al. 2018, Table 1: 5.6 → 4.2 % error with α = 1 (PreAct ResNet-18)",
              "cutmix": "Yun et al. 2019, Table 3: 3.85 → 2.88 % error (PyramidNet-200)",
              "label_smoothing": "Müller et al. 2019: label smoothing improves calibration; Szegedy et al. 2016: "
                                 "≈0.2 points of accuracy"}


@claim("regularizers", "Cutout, mixup, cutmix and label smoothing regularize a small-data model (no fixed winner).",
       """The small convnet of `augmentation` with flip + crop on 1,000 training images, 300 SGD steps (30 epochs:
       the baseline overfits), without and with each regularizer on top (cutout 16 px, mixup α = 1, cutmix α = 1,
       label smoothing ε = 0.1). Each is decided on validation NLL (1,000 images): the baseline's − the
       regularizer's, paired by seed; accuracy differences with their intervals and label smoothing's calibration
       error are reported (accuracy gains of ≈1 point are below what 1,000 validation images resolve).""",
       {**{name: Test(+1, LITERATURE[name] + " (decided on NLL: direction only)", unit="val NLL reduction")
           for name in REGULARIZERS}, "baseline_overfits": OVERFITS},
       compares=("regularizer",))
def regularizers(ctx):
    s = setting(ctx.cfg(*SMALL), ctx.n(1000, 64), ctx.n(1000, 32))
    arms = {"none": ["augment=[flip,crop]", "regularizer=none"],
            **{n: ["augment=[flip,crop]", *a] for n, a in REGULARIZERS.items()}}
    acc, nll, ece, train_acc = ({a: [] for a in arms} for _ in range(4))
    for seed in ctx.seeds:
        for name, arm in arms.items():
            val, train = train_small(ctx, s, arm, seed)
            train_acc[name].append(train)
            acc[name].append(val["acc"])
            nll[name].append(val["nll"])
            ece[name].append(calibration_error(val["logits"], s.val.labels))
    fig, axes = figure(1, 2, size=(10, 4))
    bars(axes[0, 0], acc, "validation accuracy")
    bars(axes[0, 1], nll, "validation NLL")
    save(fig, ctx.folder, "regularizers: on top of flip + crop, small training set")
    accuracy_gain = {n: stats.paired(acc[n], acc["none"]).as_dict() for n in REGULARIZERS}
    samples = {**{n: (nll["none"], nll[n]) for n in REGULARIZERS}, "baseline_overfits": (train_acc["none"], None)}
    return samples, {"val_acc": acc, "val_nll": nll, "train_acc": train_acc, "calibration_error": ece,
                     "accuracy_gain": accuracy_gain}


BN_LRS = (0.03, 0.1, 0.3, 1.0, 3.0)  # pilot grid: the smallest lr at which the unnormalized net fails


def failed(h, chance_loss: float) -> bool:
    """Diverged (non-finite loss) or ended above the loss of a uniform guess (ln K): no training happened."""
    tail = h.losses[-10:]
    return h.diverged is not None or not tail or sum(tail) / len(tail) >= chance_loss


@claim("batchnorm_lr", "Batch normalization lets a deep net train at a learning rate where the unnormalized one "
       "diverges.",
       """The 4-conv net of `relu_speed` on 512 training images, 200 SGD steps. A pilot (one seed) finds the smallest
       lr of 0.03–3 at which the net without normalization diverges or ends above the chance loss ln 10; at that lr,
       per seed, both nets are trained. Effect: training error over the subset without − with batch norm (a
       diverged net counts as chance).""",
       {"trains_where_plain_fails": Test(+1, "Ioffe & Szegedy 2015, §4.2.2 and Fig. 3: with batch norm Inception "
                                             "trains at 5× and 30× the learning rate (direction)",
                                         unit="training error")},
       compares=("model.norm",))
def batchnorm_lr(ctx):
    base = ["experiment=lab_convnet", "model.widths=[16,32]"]
    s = setting(ctx.cfg(*base), ctx.n(512, 32))
    chance = math.log(len(s.classes))

    def run(norm, lr, seed):
        assembly = assemble_model(ctx.cfg(*base, f"model.norm={norm}"), s, seed)
        h = fit(assembly, s, steps=ctx.n(200, 4), lr=lr, seed=seed)
        error = scores(assembly.model, s, s.train)["error"] if h.diverged is None else 1 - 1 / len(s.classes)
        return h, error

    pilot = {lr: failed(run("none", lr, 1000)[0], chance) for lr in BN_LRS}
    lr = next((lr for lr in BN_LRS if pilot[lr]), BN_LRS[-1])
    ctx.note(f"pilot: the unnormalized net fails from lr {lr} on ({pilot})")
    error, fails = {"none": [], "batch": []}, {"none": [], "batch": []}
    for seed in ctx.seeds:
        for norm in error:
            h, e = run(norm, lr, seed)
            error[norm].append(e)
            fails[norm].append(failed(h, chance))
    fig, axes = figure(1, 1)
    bars(axes[0, 0], error, f"training error after 200 steps at lr {lr}")
    save(fig, ctx.folder, f"batchnorm_lr: lr {lr}, without vs with batch norm")
    return {"trains_where_plain_fails": (error["none"], error["batch"])}, \
        {"lr": lr, "pilot_failed": {str(k): v for k, v in pilot.items()}, "train_error": error, "failed": fails}
