"""The lecture's activation-function claims, each declared next to its measure. Try: deeprob lab relu_speed dataset=synthetic lab.scale=0.05

    deeprob lab saturation dataset=image_folder dataset.root=/tmp/data/cifar10-jpeg
"""
import math

import torch
import torch.nn.functional as F

from .bench import assemble_model, bars, figure, fit, save, scores, setting, training_error
from .claim import Test, claim


@claim("saturation", "Saturated neurons kill the gradients.",
       """An 8-layer MLP (256 units) right after Kaiming init, one batch of 256 training images: the norm of the
       first layer's weight gradient with sigmoid vs ReLU, per seed (tanh reported). Effect: log10 of ReLU's norm
       over sigmoid's; it holds when the interval lies above 0.""",
       {"first_layer": Test(+1, "lecture: σ'(x) ≤ 1/4, so every sigmoid layer passes back at most a quarter of "
                                "the signal a ReLU's slope 1 passes (direction only, no size)", unit="log10 ratio")},
       compares=("activation",))
def saturation(ctx):
    norms = {name: [] for name in ("sigmoid", "tanh", "relu")}
    base = ["experiment=lab_mlp", "model.depth=8"]
    s = setting(ctx.cfg(*base), ctx.n(256, 16))
    x, y = s.x(s.train), s.train.labels
    for seed in ctx.seeds:
        for name in norms:
            model = assemble_model(ctx.cfg(*base, f"activation={name}"), s, seed).model
            F.cross_entropy(model(x), y).backward()
            norms[name].append([m.weight.grad.norm().item() for m in model if isinstance(m, torch.nn.Linear)])
    first = {name: [math.log10(v[0]) for v in per_seed] for name, per_seed in norms.items()}
    fig, axes = figure(1, 1)
    for name, per_seed in norms.items():
        axes[0, 0].semilogy(range(1, len(per_seed[0]) + 1), per_seed[0], marker="o", label=f"{name} (seed 0)")
    axes[0, 0].set(xlabel="layer (1 = first, last = classifier)", ylabel="‖∂L/∂W‖")
    axes[0, 0].legend()
    save(fig, ctx.folder, "saturation: weight-gradient norm per layer at init")
    return {"first_layer": (first["relu"], first["sigmoid"])}, {"grad_norm_per_layer": norms}


def one_sign_rows(grad) -> float:
    """Share of rows whose entries are all ≥ 0 or all ≤ 0."""
    return ((grad >= 0).all(1) | (grad <= 0).all(1)).float().mean().item()


@claim("not_zero_centred", "Sigmoid outputs are not zero-centred: the gradients on all w_ij of a neuron have the "
       "same sign.",
       """A 2-hidden-layer MLP at init; for 32 single training examples the gradient of the second layer's weights,
       fed sigmoid vs tanh outputs: the share of its rows whose entries all share one sign, averaged per seed.
       Effect: sigmoid's share minus tanh's.""",
       {"one_sign": Test(+1, "∂L/∂w_ij = δ_i·x_j: with every x_j > 0 a row has δ_i's sign (share exactly 1); with "
                             "zero-centred x, 256 entries share one sign with probability ≈ 2^-255 (share ≈ 0)",
                         literature=1.0, unit="share of rows")},
       compares=("activation",))
def not_zero_centred(ctx):
    base = ["experiment=lab_mlp", "model.depth=2"]
    s = setting(ctx.cfg(*base), 32)
    x, y = s.x(s.train), s.train.labels
    shares = {"sigmoid": [], "tanh": []}
    for seed in ctx.seeds:
        for name in shares:
            model = assemble_model(ctx.cfg(*base, f"activation={name}"), s, seed).model
            per_example = []
            for i in range(len(x)):  # one example at a time: the lecture's gradient of one input
                model.zero_grad()
                F.cross_entropy(model(x[i:i + 1]), y[i:i + 1]).backward()
                per_example.append(one_sign_rows(model.fc2.weight.grad))
            shares[name].append(sum(per_example) / len(per_example))
    fig, axes = figure(1, 1)
    bars(axes[0, 0], shares, "share of one-sign rows of ∂L/∂W (fc2)")
    save(fig, ctx.folder, "not zero-centred: one-sign gradient rows per example")
    return {"one_sign": (shares["sigmoid"], shares["tanh"])}, {"one_sign_share": shares}


RELU_SPEED_LRS = (0.01, 0.03, 0.1, 0.3)  # SGD momentum 0.9: the pilot grid, each activation picks its own
TARGET_ERROR = 0.25  # Krizhevsky et al. 2012, Fig. 1: epochs to 25 % training error
CENSOR = 6  # tanh stops at 6× ReLU's steps of the same seed: a ratio of ≥ 6 is then reported as 6 (a lower bound)


@claim("relu_speed", "ReLU converges much faster than sigmoid/tanh in practice (e.g. 6×).",
       """A 4-conv net (16-16-32-32 channels, no normalization, no augmentation or regularization) on 512 training
       images, plain SGD with momentum, each activation at its best learning rate from a pilot grid (0.01–0.3,
       one pilot seed, 150 steps). Per seed, steps until the error over the whole subset is ≤ 25 % (checked every
       10 steps); tanh is censored at 6× ReLU's steps, which can only understate the ratio. Effect: ln(tanh's
       steps / ReLU's steps), paired by seed (shared initial conv weights' seed and data order). Second factor,
       reported for one seed: Krizhevsky et al.'s init N(0, 0.01²), 400 steps at each activation's lr.""",
       {"speedup": Test(+1, "Krizhevsky et al. 2012, Fig. 1: a 4-layer CNN with ReLU reaches 25 % training error on "
                            "CIFAR-10 six times faster than with tanh (ratio 6, 'varies with architecture')",
                        literature=math.log(6), unit="ln(steps ratio)")},
       compares=("activation",))
def relu_speed(ctx):
    base = ["experiment=lab_convnet", "model.widths=[16,32]", "model.norm=none", "preprocess=standardize"]
    s = setting(ctx.cfg(*base), ctx.n(512, 32))
    watch, reached = training_error(s), lambda error: error <= TARGET_ERROR
    every, cap = max(1, ctx.n(10, 1)), ctx.n(2000, 20)

    def run(name, lr, seed, steps):
        assembly = assemble_model(ctx.cfg(*base, f"activation={name}"), s, seed)
        return fit(assembly, s, steps=steps, lr=lr, seed=seed, every=every, watch=watch, stop=reached)

    best = {}
    for name in ("relu", "tanh"):  # pilot: the lr reaching the target first, else the lowest final error
        pilot = {lr: run(name, lr, 1000, ctx.n(150, 4)) for lr in RELU_SPEED_LRS}
        score = {lr: (h.stopped or math.inf, h.checks[-1][1] if h.checks and h.diverged is None else math.inf)
                 for lr, h in pilot.items()}
        best[name] = min(score, key=score.get)
        ctx.note(f"pilot: {name} at lr {best[name]} (steps to target or final error per lr: "
                 + ", ".join(f"{lr}: {v[0] if v[0] < math.inf else round(v[1], 3)}" for lr, v in score.items()) + ")")
    steps, seconds, curves, censored = {"relu": [], "tanh": []}, {"relu": [], "tanh": []}, {}, []
    for seed in ctx.seeds:
        relu = run("relu", best["relu"], seed, cap)
        relu_steps = relu.stopped or cap
        tanh = run("tanh", best["tanh"], seed, CENSOR * relu_steps)
        if tanh.stopped is None:
            censored.append(seed)
        for name, h in (("relu", relu), ("tanh", tanh)):
            steps[name].append(h.stopped or (relu_steps if name == "relu" else CENSOR * relu_steps))
            seconds[name].append(h.seconds / max(len(h.losses), 1))
            curves.setdefault(name, h.checks)
    if censored:
        ctx.note(f"tanh censored at {CENSOR}× ReLU's steps for seeds {censored}")
    ratio = [t / r for t, r in zip(steps["tanh"], steps["relu"])]
    # second factor, reported (one seed): Krizhevsky et al.'s own init, N(0, 0.01²), at each activation's lr
    small = {}
    for name in ("relu", "tanh"):
        assembly = assemble_model(ctx.cfg(*base, f"activation={name}", "init=normal", "init.std=0.01"), s, 0)
        h = fit(assembly, s, steps=ctx.n(400, 4), lr=best[name], seed=0, every=every, watch=watch, stop=reached)
        small[name] = {"steps_to_target": h.stopped, "last_error": h.checks[-1][1] if h.checks else None}
    fig, axes = figure(1, 2, size=(10, 4))
    for name, checks in curves.items():
        axes[0, 0].plot(*zip(*checks), label=f"{name} (lr {best[name]}, seed 0)")
    axes[0, 0].axhline(TARGET_ERROR, color="grey", linestyle="--", label="25 % training error")
    axes[0, 0].set(xlabel="step", ylabel="training error (whole subset)")
    axes[0, 0].legend(fontsize=8)
    bars(axes[0, 1], {n: v for n, v in steps.items()}, "steps to 25 % training error")
    save(fig, ctx.folder, f"relu_speed: tanh/ReLU steps {', '.join(f'{r:.2g}' for r in ratio)}")
    numbers = {"lr": best, "steps": steps, "ratio": ratio, "seconds_per_step": seconds, "censored_seeds": censored,
               "train_images": len(s.train), "small_init_400_steps": small}
    return {"speedup": ([math.log(t) for t in steps["tanh"]], [math.log(r) for r in steps["relu"]])}, numbers


# ---------------------------------------------------------------- dead ReLUs

def hidden_layers(model):
    """[(Linear, activation)] of an MLP's hidden layers, in order."""
    return [(getattr(model, f"fc{i}"), getattr(model, f"act{i}")) for i in range(1, 100) if hasattr(model, f"fc{i}")]


def pre_activations(model, x):
    """The pre-activations of every hidden layer on x (eval mode), [(N, units)]."""
    seen = []
    hooks = [fc.register_forward_hook(lambda m, i, o: seen.append(o.detach())) for fc, _ in hidden_layers(model)]
    with torch.no_grad():
        model.eval()(x)
    for h in hooks:
        h.remove()
    return seen


def dead_units(model, x) -> list:
    """Per hidden layer, a bool per unit: its pre-activation is ≤ 0 for every example of x (never active)."""
    return [(pre <= 0).all(0) for pre in pre_activations(model, x)]


def zero_grad_share(model, s, dead) -> float:
    """Share of dead units whose incoming weights and bias get exactly zero gradient over a full pass of the subset
    (the lecture's "never updates"); nan when no unit is dead."""
    model.train().zero_grad()
    for i in range(0, len(s.train), 500):
        F.cross_entropy(model(s.x(s.train, slice(i, i + 500))), s.train.labels[i:i + 500], reduction="sum").backward()
    zero, total = 0, 0
    for (fc, _), mask in zip(hidden_layers(model), dead):
        still = (fc.weight.grad[mask] == 0).all(1) & (fc.bias.grad[mask] == 0)
        zero, total = zero + still.sum().item(), total + mask.sum().item()
    return zero / total if total else math.nan


def fraction(masks) -> float:
    return torch.cat(masks).float().mean().item()


# pilot grid for "a too-high learning rate", the largest that does not diverge: steps of ×1.45, since this MLP
# (momentum 0.9) diverged at 0.1 and stayed finite at 0.03 on CIFAR-10
DEAD_LRS = (0.03, 0.045, 0.065, 0.09, 0.13)
DEAD_BIAS = -3.0  # ≈ −2σ of a first-layer pre-activation (Kaiming, standardized inputs: σ ≈ √2), all hidden layers


@claim("dead_relu", "A dead ReLU will never activate, so it never updates (bad init or a too-high learning rate); "
       "leaky ReLU will not die.",
       """A 3-layer MLP (256 units) on 2,000 training images, 300 SGD steps. A unit is dead when its pre-activation
       is ≤ 0 for every image of the subset. Conditions: lr 0.01 (baseline); the largest lr of a pilot grid
       (0.03–0.13, steps of ×1.45) whose run does not diverge (diverged runs are flagged and not scored); a −3
       bias on every hidden
       unit. "Never updates": the share of dead units whose incoming weights and bias get exactly zero gradient
       over a full pass. Leaky ReLU is scored on recovery: the share of units dead at init (−3 bias) that are
       alive after training, against ReLU's. The 0.01 positive-bias trick is reported.""",
       {"large_lr": Test(+1, "CS231n notes (Karpathy): with a too-high learning rate 'as much as 40 % of your network "
                             "can be dead' (an upper figure, no typical size: direction only)", unit="dead share"),
        "negative_bias": Test(+1, "lecture: a bad init (negative bias) leaves units that never activate (direction)",
                              unit="dead share"),
        "never_updates": Test(+1, "ReLU'(x) = 0 for x ≤ 0: a unit dead on every example gets exactly zero gradient "
                                  "(decided: share of dead units with zero gradient > 0.99)", literature=0.01,
                              unit="share − 0.99", margin=-0.99),
        "leaky_recovers": Test(+1, "Maas et al. 2013: leaky ReLU keeps a gradient α·δ for x < 0 (direction only)",
                               unit="share recovered")},
       compares=("activation", "init.bias"))
def dead_relu(ctx):
    base = ["experiment=lab_mlp", "model.depth=3", "model.width=256"]
    s = setting(ctx.cfg(*base), ctx.n(2000, 64))
    x, steps = s.x(s.train), ctx.n(300, 4)

    def run(seed, lr, act="relu", bias=0.0):
        assembly = assemble_model(ctx.cfg(*base, f"activation={act}", f"init.bias={bias}"), s, seed)
        at_init = dead_units(assembly.model, x)
        h = fit(assembly, s, steps=steps, lr=lr, seed=seed)
        if h.diverged is not None:
            return {"diverged": True}
        dead = dead_units(assembly.model, x)
        return {"diverged": False, "dead": fraction(dead), "dead_at_init": fraction(at_init),
                "recovered": (torch.cat(at_init) & ~torch.cat(dead)).sum().item() / max(torch.cat(at_init).sum().item(), 1),
                "zero_grad": zero_grad_share(assembly.model, s, dead) if act == "relu" else math.nan}

    pilot = {lr: run(1000, lr) for lr in DEAD_LRS}
    stable = [lr for lr, r in pilot.items() if not r["diverged"]]
    large = max(stable) if stable else min(DEAD_LRS)
    ctx.note(f"pilot: largest non-diverging lr {large} (diverged: {[lr for lr in DEAD_LRS if lr not in stable]})")
    runs = {"baseline": {}, "large_lr": {}, "negative_bias": {}, "leaky_negative_bias": {}, "bias_0.01": {}}
    for seed in ctx.seeds:
        runs["baseline"][seed] = run(seed, 0.01)
        runs["large_lr"][seed] = run(seed, large)
        runs["negative_bias"][seed] = run(seed, 0.01, bias=DEAD_BIAS)
        runs["leaky_negative_bias"][seed] = run(seed, 0.01, act="leaky_relu", bias=DEAD_BIAS)
        runs["bias_0.01"][seed] = run(seed, 0.01, bias=0.01)
    diverged = {c: [seed for seed, r in rs.items() if r["diverged"]] for c, rs in runs.items()}
    if any(diverged.values()):
        ctx.note(f"diverged runs, not scored: {diverged}")

    def pair(a, b, key):  # seeds where both arms finished
        seeds = [sd for sd in ctx.seeds if not runs[a][sd]["diverged"] and not runs[b][sd]["diverged"]]
        return [runs[a][sd][key] for sd in seeds], [runs[b][sd][key] for sd in seeds]

    zero = []  # per seed, the smaller share of the two bad conditions' dead units with exactly zero gradient
    for seed in ctx.seeds:
        shares = [runs[c][seed]["zero_grad"] for c in ("large_lr", "negative_bias")
                  if not runs[c][seed]["diverged"] and not math.isnan(runs[c][seed]["zero_grad"])]
        if shares:
            zero.append(min(shares))
    per_seed = lambda c, key: [r.get(key, math.nan) for r in runs[c].values()]  # noqa: E731
    fig, axes = figure(1, 2, size=(10, 4))
    bars(axes[0, 0], {c: per_seed(c, "dead") for c in runs}, "dead units (share of hidden units)")
    bars(axes[0, 1], {"relu": per_seed("negative_bias", "recovered"),
                      "leaky_relu": per_seed("leaky_negative_bias", "recovered")}, "units dead at init, alive after")
    save(fig, ctx.folder, f"dead_relu: dead units after training (large lr = {large})")
    samples = {"large_lr": pair("large_lr", "baseline", "dead"), "negative_bias": pair("negative_bias", "baseline", "dead"),
               "never_updates": (zero, None), "leaky_recovers": pair("leaky_negative_bias", "negative_bias", "recovered")}
    numbers = {"large_lr": large, "pilot_diverged": [lr for lr in DEAD_LRS if lr not in stable], "runs":
               {c: {str(sd): r for sd, r in rs.items()} for c, rs in runs.items()},
               "bias_0.01_minus_0": [a - b for a, b in zip(*pair("bias_0.01", "baseline", "dead"))]}
    return samples, numbers


ACTIVATIONS = ("relu", "sigmoid", "gelu", "elu", "selu")
SIMILAR = 0.03  # "similar": at most 3 points of validation accuracy below ReLU (≈ 2 standard errors at 1,000 images)


@claim("activations", "In practice: use ReLU; try GELU/ELU/SELU (similar); don't use sigmoid.",
       """A 3-layer MLP (256 units) on 2,000 training images, 600 SGD steps at lr 0.01, validation accuracy on
       1,000 held-out images, 3 seeds per activation (shared initial-weight seed and data order). Sigmoid must
       trail ReLU (interval above 0); GELU, ELU and SELU must each be non-inferior to ReLU by the 3-point margin
       (interval of accuracy − ReLU's + 0.03 above 0).""",
       {"sigmoid_trails": Test(+1, "Glorot & Bengio 2010 (Fig. 2, Table 1): sigmoid nets saturate and train worse "
                                   "than tanh/softsign; lecture: don't use sigmoid (direction only)", unit="accuracy"),
        **{f"{name}_similar": Test(+1, f"{name}: within about a point of ReLU on CIFAR in its paper (Hendrycks & Gimpel "
                                       "2016; Clevert et al. 2016; Klambauer et al. 2017): a difference of 0",
                                   literature=SIMILAR, unit="accuracy − ReLU's + 0.03", margin=SIMILAR)
           for name in ("gelu", "elu", "selu")}},
       compares=("activation",))
def activations(ctx):
    base = ["experiment=lab_mlp", "model.depth=3", "model.width=256"]
    s = setting(ctx.cfg(*base), ctx.n(2000, 64), ctx.n(1000, 32))
    acc = {name: [] for name in ACTIVATIONS}
    for seed in ctx.seeds:
        for name in ACTIVATIONS:
            assembly = assemble_model(ctx.cfg(*base, f"activation={name}"), s, seed)
            h = fit(assembly, s, steps=ctx.n(600, 4), lr=0.01, seed=seed)
            acc[name].append(scores(assembly.model, s, s.val)["acc"] if h.diverged is None else 1 / len(s.classes))
    fig, axes = figure(1, 1)
    bars(axes[0, 0], acc, "validation accuracy")
    save(fig, ctx.folder, "activations: one MLP, each activation, 3 seeds")
    samples = {"sigmoid_trails": (acc["relu"], acc["sigmoid"]),
               **{f"{n}_similar": (acc[n], acc["relu"]) for n in ("gelu", "elu", "selu")}}
    return samples, {"val_acc": acc}


@claim("selu_deep", "SELU trains a deep fully connected network without batch normalization.",
       """A 32-layer MLP (128 units) on 1,000 training images, 300 SGD steps at lr 0.01: SELU with LeCun init and
       no normalization vs ReLU with Kaiming init and batch norm after every layer. Effect: training error of the
       batch-norm ReLU net − SELU's + 0.05 (non-inferiority by 5 points); the activations' std through the SELU
       stack at init is reported (self-normalization keeps it near 1).""",
       {"trains_like_bn": Test(+1, "Klambauer et al. 2017, Fig. 1: deep SNNs (SELU, no BN) reach training losses at "
                                   "or below batch-normalized ReLU nets' (a difference of 0)", literature=0.05,
                               unit="error(BN ReLU) − error(SELU) + 0.05", margin=0.05)},
       compares=("activation", "model.norm", "init"))
def selu_deep(ctx):
    base = ["experiment=lab_mlp", "model.depth=32", "model.width=128"]
    arms = {"selu": ["activation=selu", "model.norm=none", "init=kaiming"],
            "relu_bn": ["activation=relu", "model.norm=batch", "init=kaiming"]}
    s = setting(ctx.cfg(*base), ctx.n(1000, 64))
    error, stds = {arm: [] for arm in arms}, []
    for seed in ctx.seeds:
        for arm, extra in arms.items():
            assembly = assemble_model(ctx.cfg(*base, *extra), s, seed)
            if arm == "selu" and seed == ctx.seeds[0]:
                seen = []
                hooks = [a.register_forward_hook(lambda m, i, o: seen.append(o.std().item()))
                         for _, a in hidden_layers(assembly.model)]
                with torch.no_grad():
                    assembly.model.eval()(s.x(s.train, slice(0, 256)))
                for h in hooks:
                    h.remove()
                stds = seen
            h = fit(assembly, s, steps=ctx.n(300, 4), lr=0.01, seed=seed)
            error[arm].append(scores(assembly.model, s, s.train)["error"] if h.diverged is None else 1.0)
    fig, axes = figure(1, 2, size=(10, 4))
    axes[0, 0].plot(range(1, len(stds) + 1), stds, marker="o")
    axes[0, 0].set(xlabel="layer", ylabel="std of SELU activations at init", ylim=(0, 2))
    bars(axes[0, 1], error, "training error after training")
    save(fig, ctx.folder, "selu_deep: 32 layers, SELU without BN vs ReLU with BN")
    return {"trains_like_bn": (error["relu_bn"], error["selu"])}, {"train_error": error, "selu_std_per_layer": stds}
