"""The lecture's input claims (normalization, augmentation), each declared next to its measure. Try: deeprob lab normalization dataset=synthetic lab.scale=0.05"""
import math

import torch
import torch.nn.functional as F

from .bench import assemble_model, augmenter, bars, figure, fit, save, scores, setting
from .claim import Test, claim

EPSILON = 0.05  # relative size of the weight perturbation: ‖ΔW‖ = ε‖W‖
DRAWS = 10  # perturbation directions per seed


def top_eigenvalue(x, iterations: int = 50) -> float:
    """Largest eigenvalue of E[xxᵀ] (rows of x are examples), by power iteration (the matrix is never formed)."""
    v = torch.ones(x.shape[1], dtype=torch.float64) / math.sqrt(x.shape[1])
    x = x.double()
    value = 0.0
    for _ in range(iterations):
        w = x.T @ (x @ v) / len(x)
        value = w.norm().item()
        v = w / value
    return value


@claim("normalization", "Before normalization the classification loss is very sensitive to changes in the weights; "
       "after normalization less sensitive, easier to optimize.",
       """One linear classifier per seed, trained (300 SGD steps) on standardized inputs of 2,000 training images,
       then rewritten exactly for raw [0, 1] pixels (W = W_s/σ, b = b_s − W_s·μ/σ) and for centred pixels
       (W = W_s/σ): the three compute identical logits. Each is perturbed by the same 10 random directions of
       relative size ‖ΔW‖ = 0.05‖W‖; the mean |Δ validation loss| (1,000 images) is compared. Effect: ln(raw's
       change / standardized's). The conditioning of E[xxᵀ] is reported beside it: λ_max over the mean eigenvalue,
       raw vs centred vs standardized (at gradient descent's stable lr 2/λ_max, average directions move λ_mean/λ_max
       as fast).""",
       {"raw_more_sensitive": Test(+1, "LeCun et al. 1998, Efficient BackProp §4.3: inputs with a large mean make "
                                       "E[xxᵀ] ill-conditioned (one large eigenvalue), so the loss is steep along it "
                                       "(direction only)", unit="ln ratio")},
       compares=("preprocess",))
def normalization(ctx):
    base = ["experiment=lab_mlp", "model.depth=0", "preprocess=standardize"]
    s = setting(ctx.cfg(*base), ctx.n(2000, 64), ctx.n(1000, 32))
    mean = s.preprocess.mean.expand(s.train.images.shape[1:]).flatten()
    std = s.preprocess.std.expand(s.train.images.shape[1:]).flatten()
    raw_val = s.val.images.flatten(1).float().div(255)
    inputs = {"raw": raw_val, "centred": raw_val - mean, "standardized": (raw_val - mean) / std}
    change = {name: [] for name in inputs}
    exact = []
    for seed in ctx.seeds:
        assembly = assemble_model(ctx.cfg(*base), s, seed)
        fit(assembly, s, steps=ctx.n(300, 4), lr=0.01, seed=seed, batch=128)
        w, b = assembly.model.head.weight.detach(), assembly.model.head.bias.detach()
        weights = {"raw": (w / std, b - (w / std) @ mean), "centred": (w / std, b), "standardized": (w, b)}
        logits = {name: F.linear(inputs[name], *weights[name]) for name in inputs}
        exact.append(max((logits[n] - logits["standardized"]).abs().max().item() for n in inputs))
        generator = torch.Generator().manual_seed(seed)
        noise = [torch.randn(w.shape, generator=generator) for _ in range(DRAWS)]
        for name, (wn, bn) in weights.items():
            loss = F.cross_entropy(F.linear(inputs[name], wn, bn), s.val.labels).item()
            deltas = [abs(F.cross_entropy(F.linear(inputs[name], wn + EPSILON * wn.norm() * d / d.norm(), bn),
                                          s.val.labels).item() - loss) for d in noise]
            change[name].append(sum(deltas) / len(deltas))
    raw_train = s.train.images.flatten(1).float().div(255)
    # conditioning: λ_max of E[xxᵀ] over its mean eigenvalue (trace / d). Gradient descent's stable lr is 2/λ_max,
    # and at that lr the directions of average curvature move λ_mean/λ_max as fast (LeCun et al. 1998, §4.3)
    eigen = {}
    for name, x in (("raw", raw_train), ("centred", raw_train - mean), ("standardized", (raw_train - mean) / std)):
        eigen[name] = top_eigenvalue(x) / x.pow(2).sum(1).mean().div(x.shape[1]).item()
    fig, axes = figure(1, 1)
    bars(axes[0, 0], change, f"mean |Δ val loss| for ‖ΔW‖ = {EPSILON}·‖W‖")
    ratio = [r / t for r, t in zip(change["raw"], change["standardized"])]
    save(fig, ctx.folder, f"normalization: the same classifier, raw inputs {sum(ratio) / len(ratio):.2g}× as sensitive; "
                          f"λ_max/λ_mean of E[xxᵀ] raw/standardized {eigen['raw'] / eigen['standardized']:.3g}")
    numbers = {"loss_change": change, "raw_over_standardized": ratio,
               "centred_over_standardized": [c / t for c, t in zip(change["centred"], change["standardized"])],
               "rewrite_max_logit_difference": exact, "eigenvalue_spread": eigen,
               "spread_raw_over_standardized": eigen["raw"] / eigen["standardized"]}
    return {"raw_more_sensitive": ([math.log(r) for r in change["raw"]],
                                   [math.log(t) for t in change["standardized"]])}, numbers


SMALL = ["experiment=lab_convnet", "model.widths=[16,32]"]  # batch norm on: trains to 100 % training accuracy
SMALL_STEPS = 300  # 30 epochs of 1,000 images in batches of 100
SMALL_LR = 0.05  # peak, falling linearly to 0: at a constant lr the baseline ended at only 51–63 % training accuracy


def train_small(ctx, s, arm, seed):
    """(validation scores, training accuracy) of the small convnet trained on the small subset with arm."""
    cfg = ctx.cfg(*SMALL, *arm)
    assembly = assemble_model(cfg, s, seed)
    h = fit(assembly, s, steps=ctx.n(SMALL_STEPS, 4), lr=SMALL_LR, seed=seed, batch=100, augment=augmenter(cfg, s),
            anneal=True)
    if h.diverged is not None:
        ctx.note(f"{' '.join(arm)} seed {seed}: diverged at step {h.diverged}")
    return scores(assembly.model, s, s.val), scores(assembly.model, s, s.train)["acc"]


# the regime in which augmentation and regularizers help (DeVries & Taylor 2017; Zhang et al. 2018): the baseline
# fits its training subset; decided as training accuracy (eval mode) − 0.9 > 0
OVERFITS = Test(+1, "premise: the baseline reaches > 90 % training accuracy (it overfits), the regime of the "
                    "literature's gains", unit="training accuracy − 0.9", margin=-0.9, premise=True)

AUGMENTS = {"none": ["augment=none"], "flip": ["augment=[flip]"], "crop": ["augment=[crop]"],
            "flip_crop": ["augment=[flip,crop]"]}


@claim("augmentation", "Data augmentation (flips, crops) improves generalization on a small training set.",
       """A small convnet (16-16-32-32 channels, batch norm) on 1,000 training images, 300 SGD steps (30 epochs, lr
       0.05), long enough for the baseline to overfit: no augmentation vs flip, crop (pad 4)
       and both, the lr falling linearly to 0 so every arm ends converged. Effect: validation accuracy (1,000
       images) with augmentation − without, paired by seed.""",
       {"flip_crop": Test(+1, "DeVries & Taylor 2017, Table 1: flip + translate cut ResNet-18's CIFAR-10 test error "
                              "from 10.63 % to 4.72 % (+5.9 points)", literature=0.059, unit="accuracy"),
        "flip": Test(+1, "lecture / Krizhevsky et al. 2012 §4.1: horizontal reflections (direction)", unit="accuracy"),
        "crop": Test(+1, "lecture / Krizhevsky et al. 2012 §4.1: random crops (translations) (direction)",
                     unit="accuracy"),
        "baseline_overfits": OVERFITS},
       compares=("augment",))
def augmentation(ctx):
    s = setting(ctx.cfg(*SMALL), ctx.n(1000, 64), ctx.n(1000, 32))
    acc, nll, train_acc = ({a: [] for a in AUGMENTS} for _ in range(3))
    for seed in ctx.seeds:
        for name, arm in AUGMENTS.items():
            val, train = train_small(ctx, s, arm, seed)
            acc[name].append(val["acc"])
            nll[name].append(val["nll"])
            train_acc[name].append(train)
    fig, axes = figure(1, 2, size=(10, 4))
    bars(axes[0, 0], acc, "validation accuracy")
    bars(axes[0, 1], train_acc, "training accuracy")
    save(fig, ctx.folder, "augmentation: small training set trained until the baseline overfits")
    samples = {name: (acc[name], acc["none"]) for name in ("flip_crop", "flip", "crop")}
    samples["baseline_overfits"] = (train_acc["none"], None)
    return samples, {"val_acc": acc, "val_nll": nll, "train_acc": train_acc}
