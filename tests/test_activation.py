"""Activation functions (conf/activation/): closed forms, gradients, learnable parameters, every model, plot."""
import functools
import math
import pytest
import torch
from torch import nn

from conftest import FAST
from conftest import make_cfg as compose
from deeprob_cli import UserError
from deeprob_cli.components.activation import SwiGLU, materialize
from deeprob_cli.config import build, option_names

OPTIONS = option_names("activation")
MODELS = option_names("model")
# small models so that 10 activations × 3 models train a step in a few seconds
SMALL = {"mlp": ["model.width=32", "model.depth=2"], "convnet": ["model.widths=[8,16]"],
         "resnet": ["model.depth=8", "model.width=4"]}
GRID = torch.tensor([-10.0, -1.0, 0.0, 1.0, 10.0], dtype=torch.float64)
SELU_ALPHA = 1.6732632423543772848170429916717  # Klambauer et al. 2017
SELU_LAMBDA = 1.0507009873554804934193349852946
PHI = lambda x: 0.5 * (1 + torch.erf(x / math.sqrt(2)))  # noqa: E731  standard normal CDF


make_cfg = functools.lru_cache(maxsize=None)(compose)  # composing costs ~0.3 s; these tests never mutate it


def sigmoid(x):
    return 1 / (1 + torch.exp(-x))


def closed_form(name, p):
    """The issue's definition of each option, with its configured parameters p, in float64."""
    forms = {
        "sigmoid": sigmoid,
        "tanh": lambda x: (torch.exp(x) - torch.exp(-x)) / (torch.exp(x) + torch.exp(-x)),
        "relu": lambda x: torch.where(x > 0, x, torch.zeros_like(x)),
        "leaky_relu": lambda x: torch.maximum(p.get("alpha", 0) * x, x),
        "prelu": lambda x: torch.maximum(p.get("alpha", 0) * x, x),
        "elu": lambda x: torch.where(x > 0, x, p.get("alpha", 0) * torch.expm1(x)),
        "selu": lambda x: torch.where(x > 0, SELU_LAMBDA * x, SELU_LAMBDA * SELU_ALPHA * torch.expm1(x)),
        "gelu": lambda x: x * PHI(x),
        "swish": lambda x: x * sigmoid(p.get("beta", 0) * x),
        "swiglu": lambda x: x * sigmoid(p.get("beta", 0) * x),  # the gate, with the linear half = 1
    }
    assert name in forms, f"conf/activation/{name}.yaml has no closed form in this test: add one"
    return forms[name]


def instance(name, *overrides):
    cfg = make_cfg(f"activation={name}", *overrides)
    return build(cfg.activation, "activation", _partial_=False).double(), dict(cfg.activation)


def apply(module, x):
    """f(x) for an elementwise module; a gated unit gets its linear half held at 1."""
    column = x[:, None]
    if getattr(module, "in_factor", 1) == 2:
        column = torch.cat([column, torch.ones_like(column)], dim=1)
    return module(column)[:, 0]


def value_and_slope(module, x):
    x = x.clone().requires_grad_()
    y = apply(module, x)
    (dy,) = torch.autograd.grad(y.sum(), x)
    return y.detach(), dy


@pytest.mark.parametrize("name", OPTIONS)
def test_matches_closed_form_and_its_gradient(name):
    module, params = instance(name)
    x = torch.cat([GRID, torch.linspace(-6, 6, 241, dtype=torch.float64)])
    y, dy = value_and_slope(module, x)
    form = closed_form(name, params)
    torch.testing.assert_close(y, form(x), rtol=1e-12, atol=1e-12)
    xr = x.clone().requires_grad_()
    (expected_slope,) = torch.autograd.grad(form(xr).sum(), xr)
    kink = x == 0  # relu, leaky_relu, prelu, selu have no derivative at 0: any convention is fine there
    torch.testing.assert_close(dy[~kink], expected_slope[~kink], rtol=1e-9, atol=1e-12)


def test_gradients_at_the_lecture_points():
    slope = lambda name, *o: value_and_slope(instance(name, *o)[0], GRID)[1]  # noqa: E731
    s = slope("sigmoid")
    assert s[0].item() == pytest.approx(4.5396e-5, rel=1e-4) and s[-1].item() == pytest.approx(4.5396e-5, rel=1e-4)
    r = slope("relu")
    assert r[0].item() == 0.0 and r[-1].item() == 1.0
    assert slope("leaky_relu")[0].item() == 0.1  # the lecture's α
    assert slope("leaky_relu", "activation.alpha=0.2")[0].item() == 0.2
    assert slope("elu", "activation.alpha=0.5")[1].item() == pytest.approx(0.5 * math.exp(-1), rel=1e-15)


def test_selu_constants_to_full_float64_precision():
    selu, _ = instance("selu")
    x = torch.tensor([1.0, -60.0], dtype=torch.float64)
    y = selu(x)
    assert y[0].item() == SELU_LAMBDA  # λ·1
    assert y[1].item() == -SELU_LAMBDA * SELU_ALPHA  # λα(e^-60 − 1) = −λα in float64
    assert SELU_LAMBDA == 1.0507009873554805 and SELU_ALPHA == 1.6732632423543772


def test_gelu_approximations():
    x = torch.linspace(-12, 12, 200_001, dtype=torch.float64)
    exact = instance("gelu")[0](x)
    sig = instance("gelu", "activation.approximate=sigmoid")[0](x)
    tanh = instance("gelu", "activation.approximate=tanh")[0](x)
    torch.testing.assert_close(sig, x * torch.sigmoid(1.702 * x), rtol=0, atol=1e-15)
    assert (sig - exact).abs().max().item() < 0.021
    torch.testing.assert_close(tanh, nn.functional.gelu(x, approximate="tanh"))
    with pytest.raises(UserError, match=r"^activation\.approximate: 'erf' is not allowed; expected one of none, tanh, sigmoid$"):
        instance("gelu", "activation.approximate=erf")


@pytest.mark.parametrize("name, learned", [("prelu", "weight"), ("swish", "beta")])
@pytest.mark.parametrize("shape", [(16, 6), (16, 6, 4, 4)])
def test_learned_parameter_gets_a_gradient_and_moves(name, learned, shape):
    over = ["activation.learnable=true"] if name == "swish" else []
    module = build(make_cfg(f"activation={name}", *over).activation, "activation", _partial_=False)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    materialize(module, x)
    param = dict(module.named_parameters())[learned]
    assert param.numel() == (shape[1] if name == "prelu" else 1)  # prelu: one α per channel
    before = param.detach().clone()
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
    module(x).pow(2).mean().backward()
    assert param.grad is not None and param.grad.abs().sum() > 0
    optimizer.step()
    assert not torch.equal(param.detach(), before)


def test_prelu_shared_and_its_initial_alpha():
    module = build(make_cfg("activation=prelu", "activation.per_channel=false", "activation.alpha=0.3").activation,
                   "activation", _partial_=False)
    materialize(module, torch.randn(4, 5))
    assert type(module) is nn.PReLU and module.weight.tolist() == [pytest.approx(0.3)]
    assert module(torch.tensor([[-2.0]])).item() == pytest.approx(-0.6)


def test_swiglu_halves_the_width():
    gate = SwiGLU(beta=1.5)
    a, b = torch.randn(8, 3), torch.randn(8, 3)
    torch.testing.assert_close(gate(torch.cat([a, b], 1)), a * torch.sigmoid(1.5 * a) * b)
    assert gate(torch.randn(2, 10, 4, 4)).shape == (2, 5, 4, 4)  # channel-wise in a convnet
    cfg = make_cfg("activation=swiglu", "model=mlp", "model.width=32", "model.depth=2")
    model = build(cfg.model, "model", in_shape=(3, 4, 4), num_classes=4,
                  activation=build(cfg.activation, "activation"))
    assert model.fc1.out_features == 64 and model.fc2.in_features == 32 and model.head.in_features == 32
    # its cost: every hidden Linear produces 2·width
    relu = build(cfg.model, "model", in_shape=(3, 4, 4), num_classes=4, activation=nn.ReLU)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(model) - count(relu) == (48 * 32 + 32) + (32 * 32 + 32)


@pytest.mark.parametrize("model_name", MODELS)
@pytest.mark.parametrize("name", OPTIONS)
def test_every_activation_trains_every_model_one_step(name, model_name):
    torch.manual_seed(0)
    cfg = make_cfg(f"activation={name}", f"model={model_name}", *SMALL.get(model_name, []))
    activation = build(cfg.activation, "activation")
    if model_name == "resnet" and getattr(activation(), "in_factor", 1) != 1:
        with pytest.raises(UserError, match="model=resnet: a gated activation cannot feed a residual sum"):
            build(cfg.model, "model", in_shape=(3, 8, 8), num_classes=4, activation=activation)
        return
    model = build(cfg.model, "model", in_shape=(3, 8, 8), num_classes=4, activation=activation)
    x, y = torch.randn(16, 3, 8, 8), torch.randint(0, 4, (16,))
    materialize(model, x)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    before = [p.detach().clone() for p in model.parameters()]
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert sum(not torch.equal(b, p) for b, p in zip(before, model.parameters())) >= len(before) // 2
    with torch.no_grad():
        assert torch.isfinite(nn.functional.cross_entropy(model(x), y))


@pytest.mark.parametrize("override, message", [
    ("activation.alpha=steep", "activation.alpha: 'steep' is not allowed; expected a finite number"),
    ("+activation.slope=0.2", "activation.slope: no such parameter of LeakyReLU; it takes: alpha"),
])
def test_a_bad_parameter_fails_before_training_in_one_line(tmp_path, override, message):
    from deeprob_cli.train import train

    with pytest.raises(UserError) as error:
        train(make_cfg(*FAST, "activation=leaky_relu", override), tmp_path, choices={})
    assert str(error.value) == message
    assert not list(tmp_path.iterdir())  # nothing written


def test_plot_outside_a_run(tmp_path, monkeypatch):
    from deeprob_cli.plot import plot_activations

    monkeypatch.chdir(tmp_path)
    plot_activations(["out=sheet/acts.png"])
    assert (tmp_path / "sheet" / "acts.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "sheet" / "acts.png").stat().st_size > 10_000
    assert not list(tmp_path.rglob("events.out.tfevents*"))  # not a run folder: no TensorBoard
    with pytest.raises(UserError, match="plot activations: unknown argument 'size=3'"):
        plot_activations(["size=3"])


def test_plot_curves_are_the_activation_and_its_derivative():
    from deeprob_cli.plot import curves

    x = torch.tensor([-2.0, 0.5, 3.0], dtype=torch.float64)
    y, dy = curves(nn.Tanh(), x)
    torch.testing.assert_close(y, torch.tanh(x))
    torch.testing.assert_close(dy, 1 - torch.tanh(x) ** 2)
    y, dy = curves(SwiGLU(), x)  # the gate with its linear half at 1: swish
    torch.testing.assert_close(y, x * torch.sigmoid(x))


@pytest.mark.parametrize("beta", [1.0, 1.702])
def test_swiglu_gain_keeps_the_second_moment(beta):
    """Kaiming with the gated unit's gain: E[y²] ≈ E[x²] = 1 through Linear → SwiGLU (√2 would give ≈ 1.6)."""
    from deeprob_cli.components.init import gain

    torch.manual_seed(0)
    gate = SwiGLU(beta=beta)
    layer = nn.Linear(512, 2 * 512, bias=False)
    nn.init.normal_(layer.weight, 0.0, gain(gate) / math.sqrt(512))
    y = gate(layer(torch.randn(4096, 512)))
    assert y.pow(2).mean().item() == pytest.approx(1.0, abs=0.05)
