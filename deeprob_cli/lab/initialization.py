"""The lecture's weight-initialization claims, each declared next to its measure. Try: deeprob lab init_depth dataset=synthetic lab.scale=0.05"""
import math

import torch

from ..config import build, compose_checked
from .activations import hidden_layers
from .bench import assemble_model, bars, figure, fit, save, scores, setting
from .claim import Test, claim

STACK_CASES = {"normal_0.01_tanh": ["init=normal", "init.std=0.01", "activation=tanh"],
               "normal_0.05_tanh": ["init=normal", "init.std=0.05", "activation=tanh"],
               "xavier_tanh": ["init=xavier", "activation=tanh"], "xavier_relu": ["init=xavier", "activation=relu"],
               "kaiming_relu": ["init=kaiming", "activation=relu"]}


@claim("init_depth", "Activation statistics through a deep net at init: small random numbers (0.01) shrink to zero, "
       "larger ones (0.05) saturate tanh, Xavier fits tanh, collapses with ReLU, Kaiming fits ReLU.",
       """`deeprob init-stats`' stack (6 layers of 4,096 units, 16 unit-Gaussian inputs, conf/init_stats.yaml), one
       stack per seed and case. Parts: std 0.01 shrinks (log10 first/last layer std > 0); std 0.05 saturates tanh
       more than Xavier (share of |tanh| > 0.99 in the last layer); Xavier + ReLU collapses (log2 first/last std
       > 0); Kaiming + ReLU and Xavier + tanh keep the scale, equivalence within a factor 2 over the 5 layers
       (|log2 last/first std| < 1, one declared tolerance for both "fits"). Xavier + tanh decays slowly (tanh'
       < 1 off 0, which Glorot & Bengio's linear-regime derivation ignores): the 3-seed pilot measured ×0.47.
       5 seeds: the pilot's sds (0.003–0.03) are ≥ 30× below every effect and tolerance.""",
       {"small_shrinks": Test(+1, "lecture: std ×0.01·√4096 = 0.64 per layer: 5 layers shrink by 0.64^-5 "
                                  "(log10 ≈ 0.97)", size=5 * math.log10(1 / 0.64), unit="log10 std ratio"),
        "large_saturates": Test(+1, "lecture slide: std 0.05 drives tanh into ±1 (direction only)",
                                unit="saturated share"),
        "xavier_relu_collapses": Test(+1, "He et al. 2015 §2.2: Xavier halves the variance per ReLU layer: 5 layers "
                                          "halve the std 2.5 times (log2 = 2.5)", size=2.5, unit="log2 std ratio"),
        "kaiming_relu_keeps": Test(+1, "He et al. 2015, eq. 10: Var kept per layer, ratio 1 (log2 = 0; decided "
                                       "within a factor 2)", unit="log2 std ratio last/first", margin=1.0,
                                   equivalence=True),
        "xavier_tanh_fits": Test(+1, "Glorot & Bengio 2010, eq. 16 and Fig. 6: normalized init keeps tanh's activation "
                                     "variance across layers (log2 = 0; decided within a factor 2)",
                                 unit="log2 std ratio last/first", margin=1.0, equivalence=True)},
       practice="Match the init to the activation (Kaiming for ReLU, Xavier for tanh) and check the activation std "
                "per layer at init: small constant stds vanish, and even Xavier + tanh drifts slowly with depth.",
       compares=("activation", "init"), seeds=5)
def init_depth(ctx):
    from ..init_stats import build_stack, layer_outputs, layer_stats

    stats = {case: [] for case in STACK_CASES}
    for seed in ctx.seeds:
        for case, arm in STACK_CASES.items():
            cfg = compose_checked("init_stats", [*arm, *[o for o in ctx.overrides if o.startswith("init_stats.")]])
            dims = list(cfg.init_stats.dims)
            activation = build(cfg.activation, "activation")
            torch.manual_seed(seed)
            stack = build_stack(dims, activation)
            build(cfg.init, "init")(stack, activation=activation())
            x = torch.randn(cfg.init_stats.batch, dims[0])
            stats[case].append([layer_stats(act, pre, y) for (pre, y), act in
                                zip(layer_outputs(stack, x), stack[1::2])])
    std = {c: [[layer["std"] for layer in run] for run in runs] for c, runs in stats.items()}
    log = lambda base, c, a, b: [math.log(r[a] / r[b], base) for r in std[c]]  # noqa: E731
    sat = {c: [run[-1]["saturated"] for run in runs] for c, runs in stats.items()}
    fig, axes = figure(1, 1)
    for case, runs in std.items():
        axes[0, 0].semilogy(range(1, len(runs[0]) + 1), runs[0], marker="o", label=case)
    axes[0, 0].set(xlabel="layer", ylabel="std of the activations (seed 0)")
    axes[0, 0].legend(fontsize=8)
    save(fig, ctx.folder, "init_depth: activation std through the stack right after init")
    samples = {"small_shrinks": (log(10, "normal_0.01_tanh", 0, -1), None),
               "large_saturates": (sat["normal_0.05_tanh"], sat["xavier_tanh"]),
               "xavier_relu_collapses": (log(2, "xavier_relu", 0, -1), None),
               "kaiming_relu_keeps": (log(2, "kaiming_relu", -1, 0), None),
               "xavier_tanh_fits": (log(2, "xavier_tanh", -1, 0), None)}
    return samples, {"std_per_layer": std, "saturated_last": sat}


@claim("zero_init", "Initializing all weights to 0: every neuron computes the same output and gets the same "
       "gradient — no symmetry breaking.",
       """A 2-layer MLP (64 sigmoid units) trained 100 SGD steps from init=zeros vs Kaiming, per seed: the largest
       difference between the units (rows) of each hidden layer relative to the largest weight. Parts: zeros
       stay identical, decided as exact (spread ≤ 1e-5, float rounding, in every seed), and Kaiming's units
       differ more than zeros'. Premise, on the first seed: the zero-initialized weights moved (‖fc1‖ > 0 after
       training), so "identical" does not mean "never trained". 5 seeds (the pilot's sd of the Kaiming spread,
       0.06, is 20× below its 1.4).""",
       {"zeros_identical": Test(-1, "symmetry: identical units get identical gradients, so they stay equal up to "
                                    "float rounding", unit="relative spread", exact=1e-5,
                                identity="identical units get identical gradients (symmetry is never broken)"),
        "random_differs": Test(+1, "random init breaks the symmetry (direction)", unit="relative spread")},
       practice="Never initialize weights to a constant: the units of a layer stay copies of each other however long "
                "you train.",
       compares=("init",), seeds=5, premise="the zero-initialized weights moved in training (‖fc1‖ > 0)")
def zero_init(ctx):
    base = ["experiment=lab_mlp", "model.depth=2", "model.width=64", "activation=sigmoid"]
    s = setting(ctx.cfg(*base), ctx.n(1000, 64))
    spread, moved, weights = {"zeros": [], "kaiming": []}, [], {}
    for seed in ctx.seeds:
        for init in spread:
            assembly = assemble_model(ctx.cfg(*base, f"init={init}"), s, seed)
            fit(assembly, s, steps=ctx.n(100, 4), lr=0.1, seed=seed)
            model = assembly.model
            hidden = [fc.weight.detach() for fc, _ in hidden_layers(model)]
            spread[init].append(max(((w - w[:1]).abs().max() / w.abs().max().clamp_min(1e-30)).item()
                                    for w in hidden))
            if init == "zeros":
                moved.append(hidden[0].norm().item())
                if seed == ctx.seeds[0]:
                    ctx.premise(moved[0] > 0, f"‖fc1‖ = {moved[0]:.3g} after training from zeros")
            weights.setdefault(init, hidden[0])
    fig, axes = figure(1, 2, size=(9, 3.5))
    for ax, (init, w) in zip(axes[0], weights.items()):
        image = ax.imshow(w[:16, :48].numpy(), aspect="auto", cmap="coolwarm")
        fig.colorbar(image, ax=ax)
        ax.set(title=f"init={init}: fc1 weights after training", xlabel="input", ylabel="unit")
    save(fig, ctx.folder, "zero_init: with zeros every unit of a layer stays the same")
    samples = {"zeros_identical": (spread["zeros"], None), "random_differs": (spread["kaiming"], spread["zeros"])}
    return samples, {"unit_spread": spread, "zeros_fc1_norm_after_training": moved}


RESNET = ["model=resnet", "model.depth=56"]


@claim("residual_init", "Var(F(x)+x) > Var(x): with Kaiming init the variance grows with each residual block; "
       "initialize the last layer of each branch to zero so every block starts as the identity.",
       """A ResNet-56 at init (train mode, 64 training images), per seed: the output variance of the stem and of
       each of stage 1's 9 identity-shortcut blocks, with and without init.zero_residual. Parts: the variance grows
       over stage 1 (log2 of the last block's over the stem's > 0), and with zero-initialized branches it stays,
       decided as exact (|growth − 1| ≤ 0.01 in every seed). The growth is additive, not multiplicative: with
       batch norm in the branch each block adds about the branch's unit variance. 5 seeds (the pilot's sd, 0.25
       log2, is 14× below the 3.5 growth).""",
       {"grows": Test(+1, "Var(F + x) = Var(F) + Var(x) for independent F and x (lecture; He et al. 2016): "
                          "growth per block (direction)", unit="log2 variance growth"),
        "zero_keeps": Test(-1, "with F = 0 a block is relu(x) = x for x ≥ 0: growth exactly 1 (Goyal et al. 2017 "
                               "§5.1)", unit="|growth − 1|", exact=0.01,
                           identity="a block with F = 0 is relu(x) = x on the stem's non-negative output")},
       practice="Zero-initialize the last layer of each residual branch so a deep ResNet starts as the identity "
                "instead of growing its variance block by block.",
       compares=("init.zero_residual", "model"), seeds=5)
def residual_init(ctx):
    s = setting(ctx.cfg(*RESNET), 64)
    x = s.x(s.train)
    variance = {"false": [], "true": []}
    for seed in ctx.seeds:
        for zero in variance:
            model = assemble_model(ctx.cfg(*RESNET, f"init.zero_residual={zero}"), s, seed).model.train()
            seen = []
            hooks = [m.register_forward_hook(lambda m, i, o: seen.append(o.var().item()))
                     for m in (model.stem, *model.blocks)]
            with torch.no_grad():
                model(x)
            for h in hooks:
                h.remove()
            variance[zero].append(seen)
    n = (56 - 2) // 6  # blocks of the first stage (identity shortcuts)
    growth = {z: [v[n] / v[0] for v in runs] for z, runs in variance.items()}
    fig, axes = figure(1, 1)
    for zero, label in (("false", "kaiming"), ("true", "kaiming + init.zero_residual")):
        axes[0, 0].semilogy(variance[zero][0], marker="o", markersize=3, label=label)
    axes[0, 0].axvspan(0, n, color="grey", alpha=0.15, label="stage 1 (identity shortcuts)")
    axes[0, 0].set(xlabel="0 = stem, then block", ylabel="Var(block output), seed 0")
    axes[0, 0].legend()
    save(fig, ctx.folder, f"residual_init: stage-1 variance ×{growth['false'][0]:.2g} vs ×{growth['true'][0]:.3g}")
    samples = {"grows": ([math.log2(g) for g in growth["false"]], None),
               "zero_keeps": ([abs(g - 1) for g in growth["true"]], None)}
    return samples, {"stage1_growth": growth, "variance_seed0": {z: v[0] for z, v in variance.items()}}


DEEP = 30  # He et al. 2015, Fig. 3: the 30-layer plain net


@claim("kaiming_deep", "Kaiming init makes a deep plain ReLU net trainable where Xavier or small Gaussian "
       "init stall.",
       """A 30-layer plain ReLU MLP (256 units, no normalization) on 512 training images, 600 SGD steps at one lr
       (0.01) for every init, as He et al. compare them, plus Xavier at 10× the lr (0.1), so that "Xavier
       stalls" is not only "Xavier's signal is smaller at this lr". Per seed: the cross-entropy over the whole
       training subset after training (a diverged net counts as the uniform guess, ln K), which separates nets
       that all sit at the majority guess in error. Effects: each other init's training loss − Kaiming's. 5
       seeds: the 3-seed pilot's sd of the error difference (0.13) left ±0.16 at 5 seeds against an effect of
       0.34; the loss resolves more.""",
       {"beats_xavier": Test(+1, "He et al. 2015, Fig. 3: the 30-layer ReLU net with Xavier init does not learn at "
                                 "all, with theirs it converges (direction; no size at equal steps)",
                             unit="training loss"),
        "beats_xavier_10x_lr": Test(+1, "He et al. 2015, Fig. 3 (as above), Xavier given a 10× larger lr "
                                        "(direction)", unit="training loss"),
        "beats_small": Test(+1, "lecture: std 0.01 shrinks the signal ×0.01·√256 = 0.16 per layer (direction)",
                            unit="training loss")},
       practice="For a deep plain ReLU net use Kaiming init: Xavier or small Gaussian inits stall even at a larger "
                "learning rate.",
       compares=("init",), seeds=5)
def kaiming_deep(ctx):
    spec = ctx.spec()
    jobs = [(spec, arm, seed) for seed in ctx.seeds for arm in DEEP_ARMS]
    loss, error, curves = {a: [] for a in DEEP_ARMS}, {a: [] for a in DEEP_ARMS}, {}
    for (_, arm, _), (value, err, losses) in zip(jobs, ctx.map(deep_run, jobs)):
        loss[arm].append(value)
        error[arm].append(err)
        curves.setdefault(arm, losses)
    fig, axes = figure(1, 2, size=(10, 4))
    for arm, losses in curves.items():
        axes[0, 0].plot(losses, label=arm)
    axes[0, 0].set(xlabel="step", ylabel="training loss per batch (seed 0)")
    axes[0, 0].legend()
    bars(axes[0, 1], loss, "training loss (whole subset) after training")
    save(fig, ctx.folder, f"kaiming_deep: {DEEP}-layer plain ReLU net")
    return {f"beats_{arm}": (loss[arm], loss["kaiming"]) for arm in ("xavier", "xavier_10x_lr", "small")}, \
        {"train_loss": loss, "train_error": error}


DEEP_BASE = ["experiment=lab_mlp", f"model.depth={DEEP}", "model.width=256", "activation=relu"]
DEEP_ARMS = {"kaiming": (["init=kaiming"], 0.01), "xavier": (["init=xavier"], 0.01),
             "xavier_10x_lr": (["init=xavier"], 0.1), "small": (["init=normal", "init.std=0.01"], 0.01)}


def deep_run(spec, arm: str, seed: int) -> tuple:
    """(training loss, training error, per-step losses) of one kaiming_deep arm after training (the uniform
    guess's loss and error where it diverged)."""
    s = setting(spec.cfg(*DEEP_BASE), spec.n(512, 64))
    extra, lr = DEEP_ARMS[arm]
    assembly = assemble_model(spec.cfg(*DEEP_BASE, *extra), s, seed)
    h = fit(assembly, s, steps=spec.n(600, 4), lr=lr, seed=seed)
    train = scores(assembly.model, s, s.train)
    if h.diverged is not None or not math.isfinite(train["nll"]):
        return math.log(len(s.classes)), 1 - 1 / len(s.classes), h.losses
    return train["nll"], train["error"], h.losses
