"""Weight initialization (conf/init/): every option on every model, the lecture's variance formulas, zero init's
symmetry, zero_residual's identity blocks, LSUV's unit variances."""
import math

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from conftest import make_cfg
from deeprob_cli import UserError
from deeprob_cli.components import init
from deeprob_cli.config import CONFIG_DIR, build, check, option_names
from deeprob_cli.models import MLP, BasicBlock, ResNet

OPTIONS = option_names("init")
MODELS = option_names("model")
SHAPE = (3, 16, 16)


def test_the_lecture_options_exist():
    assert {"default", "zeros", "normal", "xavier", "kaiming", "orthogonal", "lsuv"} <= set(OPTIONS)


@pytest.mark.parametrize("option", OPTIONS)
def test_every_option_exposes_the_cross_cutting_settings(option):
    node = OmegaConf.load(CONFIG_DIR / "init" / f"{option}.yaml")
    if option == "fixup":  # zeroes every branch's last layer by definition: no zero_residual switch
        assert "bias" in node and "zero_residual" not in node
        return
    assert "bias" in node and "zero_residual" in node and node.zero_residual is False


def _model(*overrides):
    cfg = make_cfg("dataset=synthetic", *overrides)
    activation = build(cfg.activation, "activation")
    model = build(cfg.model, "model", in_shape=SHAPE, num_classes=4, activation=activation)
    return cfg, model, activation


@pytest.mark.parametrize("model_name", MODELS)
@pytest.mark.parametrize("option", OPTIONS)
def test_every_option_initializes_every_model(option, model_name):
    residual = model_name == "resnet"
    overrides = [f"init={option}", f"model={model_name}", "init.bias=0.01"]
    overrides += [f"init.zero_residual={residual}"] if option != "fixup" else ["model.norm=none"] * residual
    overrides += {"convnet": ["model.widths=[8,16]"], "resnet": ["model.depth=8", "model.width=8"]}.get(model_name, [])
    cfg, model, activation = _model(*overrides)
    torch.manual_seed(0)
    batch = torch.randn(32, *SHAPE)
    if option == "fixup" and not residual:  # refused by the declared need, before any model is built
        with pytest.raises(UserError, match=r"^init=fixup: needs a residual model without normalization"):
            check(cfg)
        return
    build(cfg.init, "init")(model, activation=activation(), batch=batch)

    zeroed = {id(b.conv2) for b in _blocks(model)} | {id(model.head[-1])} if option == "fixup" else set()
    for layer in init.layers(model):
        assert torch.isfinite(layer.weight).all()
        assert layer.bias is None or torch.all(layer.bias == (0 if id(layer) in zeroed else 0.01))
        if option == "zeros" or id(layer) in zeroed:
            assert torch.all(layer.weight == 0)
        else:
            assert layer.weight.std() > 0
    if residual:
        for block in _blocks(model):
            assert torch.all((block.conv2 if option == "fixup" else block.norm2).weight == 0)
    logits = model(batch)
    assert logits.shape == (32, 4) and torch.isfinite(logits).all()


def _blocks(model):
    return [m for m in model.modules() if isinstance(m, BasicBlock)]


def test_conv_fan_in_is_kernel_area_times_input_channels():
    conv = nn.Conv2d(24, 40, kernel_size=5)
    assert init.fan_in(conv) == 5 * 5 * 24
    assert init.fan_out(conv) == 5 * 5 * 40
    assert init.fan_in(nn.Linear(300, 7)) == 300 and init.fan_out(nn.Linear(300, 7)) == 7


def _weight_std(scheme, layer, activation=None, **params):
    torch.manual_seed(0)
    scheme(layer, activation=activation, **params)
    return layer.weight.std().item()


BIG = nn.Linear(4096, 1024)  # 4M weights: the sample std is within ≈0.1 % of the true one
CONV = nn.Conv2d(128, 512, 3)  # 590k weights, fan_in 1152, fan_out 4608


@pytest.mark.parametrize("distribution", ["normal", "uniform"])
@pytest.mark.parametrize("layer", [BIG, CONV], ids=["linear", "conv"])
def test_xavier_std_is_one_over_sqrt_fan_in(layer, distribution):
    std = _weight_std(init.xavier, layer, distribution=distribution)
    assert std == pytest.approx(1 / math.sqrt(init.fan_in(layer)), rel=0.01)
    glorot = _weight_std(init.xavier, layer, distribution=distribution, glorot=True)
    assert glorot == pytest.approx(math.sqrt(2 / (init.fan_in(layer) + init.fan_out(layer))), rel=0.01)


@pytest.mark.parametrize("activation, expected_gain", [
    (nn.ReLU(), math.sqrt(2)),
    (nn.LeakyReLU(0.1), math.sqrt(2 / (1 + 0.1 ** 2))),
    (nn.PReLU(init=0.25), math.sqrt(2 / (1 + 0.25 ** 2))),
    (nn.Tanh(), 5 / 3),  # bounded: no gain reaches a second moment of 1, torch's value
    (nn.SELU(), 1.0),  # LeCun
], ids=["relu", "leaky_relu", "prelu", "tanh", "selu"])
@pytest.mark.parametrize("layer", [BIG, CONV], ids=["linear", "conv"])
def test_kaiming_std_is_gain_over_sqrt_fan_in(layer, activation, expected_gain):
    """relu: std = √(2/Din), the lecture's formula (not its slide code's /np.sqrt(Din))."""
    assert init.gain(activation) == pytest.approx(expected_gain)
    std = _weight_std(init.kaiming, layer, activation)
    assert std == pytest.approx(expected_gain / math.sqrt(init.fan_in(layer)), rel=0.01)


@pytest.mark.parametrize("distribution", ["normal", "uniform"])
def test_kaiming_fan_out_and_uniform(distribution):
    std = _weight_std(init.kaiming, CONV, nn.ReLU(), mode="fan_out", distribution=distribution)
    assert std == pytest.approx(math.sqrt(2 / init.fan_out(CONV)), rel=0.01)


def test_normal_std_is_the_given_one():
    assert _weight_std(init.normal, BIG) == pytest.approx(0.01, rel=0.01)
    assert _weight_std(init.normal, BIG, std=0.05) == pytest.approx(0.05, rel=0.01)


def test_gain_honours_an_own_activation_and_orthogonal_uses_it():
    class Scaled(nn.Module):
        init_gain = 1.5

        def forward(self, x):
            return x

    assert init.gain(Scaled()) == 1.5
    layer = nn.Linear(256, 256)
    init.orthogonal(layer, activation=Scaled())
    assert torch.allclose(layer.weight @ layer.weight.T, 1.5 ** 2 * torch.eye(256), atol=1e-4)
    assert torch.all(layer.bias == 0)


def test_zeros_never_breaks_symmetry():
    """All hidden units of a layer compute the same output and get the same gradient, step after step."""
    torch.manual_seed(0)
    model = MLP((3, 4, 4), 3, nn.Tanh, depth=2, width=8)
    init.zeros(model, activation=nn.Tanh(), bias=0.1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    x, y = torch.randn(16, 3, 4, 4), torch.randint(0, 3, (16,))
    hidden = [model.fc1, model.fc2]
    for _ in range(3):
        outputs = {}
        hooks = [layer.register_forward_hook(lambda m, i, o, k=k: outputs.__setitem__(k, o))
                 for k, layer in enumerate(hidden)]
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        for hook in hooks:
            hook.remove()
        for k, layer in enumerate(hidden):
            assert torch.allclose(outputs[k], outputs[k][:, :1].expand_as(outputs[k]))  # identical units
            assert torch.allclose(layer.weight.grad, layer.weight.grad[:1].expand_as(layer.weight.grad))
        optimizer.step()
    assert model.head.weight.abs().sum() > 0  # training did change weights, symmetrically
    assert torch.allclose(model.fc2.weight, model.fc2.weight[:1].expand_as(model.fc2.weight))


@pytest.mark.parametrize("norm", ["batch", "none"])
@pytest.mark.parametrize("option", OPTIONS)
def test_zero_residual_blocks_start_as_identity(option, norm):
    """F(x) = 0 in every block; a block with an identity shortcut maps its (non-negative) input to itself."""
    torch.manual_seed(0)
    model = ResNet(SHAPE, 4, nn.ReLU, depth=8, width=4, norm=norm)
    x = torch.randn(8, *SHAPE)
    if option == "fixup":  # always zero-residual; needs norm=none
        if norm == "batch":
            with pytest.raises(UserError, match=r"^init=fixup: .*\(model\.norm=batch\); use model=resnet model\.norm=none"):
                check(make_cfg("dataset=synthetic", "model=resnet", "init=fixup"))
            return
        init.fixup(model, activation=nn.ReLU(), bias=0.01)
    else:
        getattr(init, option)(model, activation=nn.ReLU(), batch=x, zero_residual=True, bias=0.01)
    h = model.stem(x)
    for block in model.blocks:
        assert torch.all(block.residual(h) == 0)
        out = block(h)
        if isinstance(block.shortcut, nn.Identity):
            assert torch.equal(out, h)
        h = out


@pytest.mark.parametrize("model", ["mlp", "convnet"])
def test_zero_residual_needs_a_residual_model(model):
    with pytest.raises(UserError, match=r"^init=kaiming: zero_residual=true needs residual blocks and model \w+ has "
                                        r"none.*; use model=resnet, or init\.zero_residual=false$"):
        check(make_cfg("dataset=synthetic", f"model={model}", "init.zero_residual=true"))
    check(make_cfg("dataset=synthetic", "model=resnet", "init.zero_residual=true"))  # the same setting fits a resnet


@pytest.mark.parametrize("args, word", [(["init.zero_residual=true"], "zero_residual=true needs residual blocks"),
                                         (["init=fixup"], "needs a residual model without normalization")])
def test_init_stats_refuses_what_its_stack_of_linear_layers_cannot_hold(args, word):
    """The same declared needs, checked before Hydra starts: init-stats' stack has no residual blocks."""
    from deeprob_cli.launch import precheck

    with pytest.raises(UserError, match=rf"^init=\w+: {word}, and the init-stats stack \(Linear → activation layers\) "
                                        rf"has none"):
        precheck(args, "init_stats")
    precheck(["init.zero_residual=false"], "init_stats")  # what it can hold passes


def _layer_variances(model, x):
    variances = []
    hooks = [layer.register_forward_hook(lambda m, i, o: variances.append(o.var().item()))
             for layer in init.layers(model)]
    with torch.no_grad():
        model(x)
    for hook in hooks:
        hook.remove()
    return variances


@pytest.mark.parametrize("model_name", MODELS)
def test_lsuv_gives_unit_output_variance_on_a_fresh_batch(model_name):
    overrides = ["init=lsuv", f"model={model_name}"]
    overrides += {"convnet": ["model.widths=[8,16]"], "resnet": ["model.depth=8", "model.width=8"]}.get(model_name, [])
    cfg, model, activation = _model(*overrides)
    torch.manual_seed(0)
    n = 256 if model_name == "mlp" else 64  # the mlp's 4-unit head needs more examples for a steady variance
    fit, fresh = torch.randn(n, *SHAPE), torch.randn(n, *SHAPE)
    before = {k: v.clone() for k, v in model.named_buffers()}
    build(cfg.init, "init")(model, activation=activation(), batch=fit)
    for name, value in model.named_buffers():  # batch norm's running statistics are untouched
        assert torch.equal(value, before[name]), name
    variances = _layer_variances(model.train(), fresh)  # batch norm on batch statistics, as in training
    assert len(variances) == len(init.layers(model))
    assert all(abs(v - 1) < 0.1 for v in variances), variances


def test_lsuv_on_the_lecture_stack_with_tanh():
    from deeprob_cli.init_stats import build_stack

    torch.manual_seed(0)
    stack = build_stack([256] * 7, nn.Tanh)
    init.lsuv(stack, activation=nn.Tanh(), batch=torch.randn(64, 256))
    assert all(abs(v - 1) < 0.1 for v in _layer_variances(stack, torch.randn(64, 256)))


@pytest.mark.parametrize("override, message", [
    ("init.mode=sideways", r"^init\.mode: 'sideways' is not allowed; expected one of fan_in, fan_out$"),
    ("init.distribution=cauchy", r"^init\.distribution: 'cauchy' is not allowed; expected one of normal, uniform$"),
    ("init.bias=high", r"^init\.bias: 'high' is not allowed; expected null or a finite number$"),
])
def test_bad_parameters_are_one_line_user_errors(override, message):
    cfg, model, activation = _model("init=kaiming", "model=mlp", override)
    with pytest.raises(UserError, match=message):
        build(cfg.init, "init")(model, activation=activation(), batch=None)


def test_unknown_parameter_lists_the_allowed_ones():
    node = OmegaConf.merge(OmegaConf.load(CONFIG_DIR / "init" / "normal.yaml"), {"stdd": 0.1})
    with pytest.raises(UserError, match=r"^init\.stdd: no such parameter of normal; it takes: .*std, bias, zero_residual$"):
        build(node, "init")


def test_bias_null_keeps_the_layers_own_bias():
    """Every option's YAML says `bias: null` keeps the layer's own bias: the declared type allows it."""
    cfg, model, activation = _model("init=kaiming", "model=mlp", "init.bias=null")
    before = model.fc1.bias.clone()
    build(cfg.init, "init")(model, activation=activation(), batch=None)
    assert torch.equal(model.fc1.bias, before)


# ---------------------------------------------------------------- gains that keep the second moment

ACTIVATIONS = option_names("activation")
BOUNDED = {"tanh", "sigmoid"}  # E[f(g·z)²] < 1 for every g: torch's conventional gains


def _activation(name, **params):
    return build(OmegaConf.merge(OmegaConf.load(CONFIG_DIR / "activation" / f"{name}.yaml"), params), "activation")


@pytest.mark.parametrize("name", sorted(set(ACTIVATIONS) - BOUNDED - {"swiglu"}))
def test_gain_gives_unit_second_moment_by_monte_carlo(name):
    """E[f(g·z)²] = 1 for z ~ N(0, 1), checked on 2·10⁶ samples (not the quadrature the gain came from)."""
    act = _activation(name)()
    g = init.gain(act)
    z = torch.randn(2_000_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with torch.no_grad():
        if name == "prelu":
            act = nn.PReLU(init=0.25).double()
        moment = act(g * z).pow(2).mean().item()
    assert moment == pytest.approx(1.0, abs=0.005)


@pytest.mark.parametrize("activation, expected", [
    (nn.GELU(), 1.468), (nn.SiLU(), 1.5588), (nn.ELU(), 1.278), (nn.ReLU(), math.sqrt(2)), (nn.SELU(), 1.0)])
def test_gain_of_the_smooth_relus_is_not_he_gain(activation, expected):
    """Before: GELU, SiLU, ELU fell back to √2, i.e. E[f(√2·z)²] = 0.92, 0.80, 1.20."""
    assert init.gain(activation) == pytest.approx(expected, abs=1e-3)


def test_learnable_swish_gain_is_at_its_initial_beta():
    from deeprob_cli.components.activation import Swish
    assert init.gain(Swish(2.0, learnable=True)) == pytest.approx(init.gain(Swish(2.0)))
    assert init.gain(Swish(2.0, learnable=True)) != pytest.approx(init.gain(Swish(1.0)), abs=1e-2)


def _second_moment_after(name, layers=8, width=1024):
    torch.manual_seed(0)
    act = _activation(name)
    mlp = MLP((width, 1, 1), 4, act, depth=layers, width=width)
    init.kaiming(mlp, activation=act())
    seen = {}
    mlp.get_submodule(f"act{layers}").register_forward_hook(lambda m, i, o: seen.update(m2=o.pow(2).mean().item()))
    with torch.no_grad():
        mlp(torch.randn(1024, width, 1, 1))
    return seen["m2"]


@pytest.mark.parametrize("name", sorted(set(ACTIVATIONS) - BOUNDED - {"swiglu"}))
def test_second_moment_stays_one_through_eight_layers(name):
    """Unit-second-moment inputs through 8 Kaiming-initialized layers keep E[x²] ≈ 1 (with the old √2:
    SiLU 0.04, GELU 0.39, ELU 3.0)."""
    assert 0.8 < _second_moment_after(name) < 1.25


# ---------------------------------------------------------------- fixup

def test_fixup_scales_the_first_conv_zeroes_the_last_and_the_classifier():
    torch.manual_seed(0)
    model = ResNet(SHAPE, 4, nn.ReLU, depth=20, width=16, norm="none")  # L = 9 blocks
    init.fixup(model, activation=nn.ReLU())
    blocks = _blocks(model)
    assert len(blocks) == 9
    for block in blocks:
        expected = math.sqrt(2 / init.fan_in(block.conv1)) * 9 ** -0.5  # He std × L^(−1/(2m−2)), m = 2
        assert block.conv1.weight.std().item() == pytest.approx(expected, rel=0.1)
        assert torch.all(block.conv2.weight == 0) and torch.all(block.conv2.bias == 0)
        assert [getattr(block, n).item() for n in ("bias1a", "bias1b", "bias2a", "bias2b", "scale")] == [0, 0, 0, 0, 1]
    assert torch.all(model.head[-1].weight == 0) and torch.all(model.head[-1].bias == 0)
    x = torch.randn(4, *SHAPE)
    assert torch.all(model(x) == 0)  # zero classifier: uniform prediction at init


def test_fixup_keeps_a_deep_plain_resnet_finite_where_kaiming_explodes():
    """Without normalization the output of Kaiming's 56-layer resnet grows with depth; Fixup's stays at the
    input's scale (every block starts as the identity)."""
    torch.manual_seed(0)
    x = torch.randn(8, *SHAPE)
    scales = {}
    for name in ("kaiming", "fixup"):
        model = ResNet(SHAPE, 4, nn.ReLU, depth=56, width=8, norm="none")
        getattr(init, name)(model, activation=nn.ReLU())
        with torch.no_grad():
            scales[name] = model.blocks(model.stem(x)).pow(2).mean().sqrt().item() / model.stem(x).pow(2).mean().sqrt().item()
    assert scales["fixup"] < 3 and scales["kaiming"] > 100, scales


def test_fixup_scalars_get_gradients_and_are_not_decayed():
    from deeprob_cli.components.regularizer import decayed_weights
    model = ResNet(SHAPE, 4, nn.ReLU, depth=8, width=4, norm="none")
    init.fixup(model, activation=nn.ReLU())
    model.head[-1].weight.data.normal_()  # a nonzero classifier so gradients reach the blocks
    model(torch.randn(4, *SHAPE)).sum().backward()
    block = _blocks(model)[0]
    assert block.scale.grad is not None and block.bias2b.grad.abs().item() > 0
    decayed = {id(w) for w in decayed_weights(model)}
    assert id(block.scale) not in decayed and id(block.bias1a) not in decayed
