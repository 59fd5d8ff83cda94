"""Figures read back: the activation sheet (parameter values in titles, f' on its own axis with a shared zero) and
the init-stats histograms (exact zeros left out and counted, clean title). compare's figure: test_compare.py."""
import pytest
import torch
from omegaconf import OmegaConf

from deeprob_cli import plot
from deeprob_cli.init_stats import _split_title, plot_histograms


@pytest.fixture(scope="module")
def sheet():
    fig = plot.draw(plot.options())
    fig.draw_without_rendering()
    panels = {}
    for ax in fig.axes:
        if ax.get_title():  # a panel's main axes; its twin shares the position
            twin = next(a for a in fig.axes if a is not ax and a.get_position().bounds == ax.get_position().bounds)
            panels[ax.get_title().split("\n")[0]] = (ax, twin)
    return fig, panels


@pytest.mark.parametrize("name, shown", [("leaky_relu", "α=0.1"), ("prelu", "α=0.25, per channel"), ("elu", "α=1"),
                                         ("selu", "α≈1.673, λ≈1.051"), ("swish", "β=1"), ("gelu", "approximate=none"),
                                         ("swiglu", "β=1, linear half = 1")])
def test_sheet_titles_carry_the_parameter_values(sheet, name, shown):
    _, panels = sheet
    assert shown in panels[name][0].get_title()


def test_parameters_of_a_run_config_are_its_own():
    node = OmegaConf.create({"_target_": "x.Swish", "_partial_": True, "beta": 1.702, "learnable": True})
    assert plot.parameters(node) == "β=1.702, learnable"


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "elu", "selu", "gelu", "sigmoid", "tanh"])
def test_derivative_axes_share_one_range_and_every_axis_shares_zero(sheet, name):
    _, panels = sheet
    ax, twin = panels[name]
    f, df = ax.get_lines()[0].get_ydata(), twin.get_lines()[0].get_ydata()
    lo, hi = twin.get_ylim()
    assert (lo, hi) == panels["relu"][1].get_ylim()  # one f' range on every panel
    assert lo <= df.min() and df.max() <= hi
    a_lo, a_hi = ax.get_ylim()
    assert a_lo <= f.min() and f.max() <= a_hi
    assert -a_lo / (a_hi - a_lo) == pytest.approx(-lo / (hi - lo), abs=1e-9)  # y = 0 at the same height
    r_lo, r_hi = panels["relu"][1].get_ylim()
    assert -a_lo / (a_hi - a_lo) == pytest.approx(-r_lo / (r_hi - r_lo), abs=1e-9)  # ... on every panel


def test_sigmoid_derivative_peak_is_a_quarter_of_tanhs_on_the_sheet(sheet):
    """The lecture's point: sigmoid' peaks at 1/4, tanh' at 1; drawn on one f' range, not each filling its panel."""
    _, panels = sheet
    peak = {name: panels[name][1].get_lines()[0].get_ydata().max() / (lambda lim: lim[1] - lim[0])(
        panels[name][1].get_ylim()) for name in ("sigmoid", "tanh")}
    assert peak["sigmoid"] / peak["tanh"] == pytest.approx(0.25, rel=0.01)


def test_sheet_legend_names_both_curves(sheet):
    fig, _ = sheet
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["f(x) (left axis)", "f'(x) (right axis, one range on every panel)"]


def test_init_stats_histograms_leave_exact_zeros_out_and_say_how_many(tmp_path):
    g = torch.Generator().manual_seed(0)
    relu = [torch.relu(torch.randn(16, 512, generator=g)) for _ in range(3)]
    tanh = [torch.tanh(torch.randn(16, 512, generator=g))]
    outputs = relu + tanh
    stats = [{"layer": i, "mean": y.mean().item(), "std": y.std().item()} for i, y in enumerate(outputs, 1)]
    title = "init=kaiming(mode=fan_in, distribution=normal)  activation=ReLU  4 layers of 512, batch 16, seed 0"
    fig = plot_histograms(outputs, stats, title, tmp_path / "h.png")
    assert (tmp_path / "h.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for ax, y in zip(fig.axes, outputs):
        drawn = sum(p.get_height() for p in ax.patches)
        assert drawn == int((y != 0).sum())  # every nonzero value is in a bar, no zero is
        notes = [t.get_text() for t in ax.texts]
        zeros = (y == 0).double().mean().item()
        assert notes == ([f"{zeros:.0%} exactly 0\n(not drawn)"] if zeros else [])
    assert 0.45 < (relu[0] == 0).double().mean().item() < 0.55  # the spike that would have been drawn
    assert fig._suptitle.get_text() == "init=kaiming, activation=ReLU: 4 layers of 512"
    assert fig._supxlabel.get_text() == "init: mode=fan_in, distribution=normal  ·  batch 16, seed 0"


def test_an_unexpected_title_is_kept_whole():
    assert _split_title("something else") == ("something else", "")


def test_init_stats_figure_names_the_init_std_and_has_a_count_axis(tmp_path):
    """`deeprob init-stats init=normal init.std=0.05`: the std is the lecture's knob, so it is in the headline;
    each panel has labelled count ticks."""
    title = "init=normal(mean=0.0, std=0.05)  activation=Tanh  4 layers of 512, batch 16, seed 0"
    assert _split_title(title)[0] == "init=normal std=0.05, activation=Tanh: 4 layers of 512"
    outputs = [torch.randn(16, 512) for _ in range(2)]
    stats = [{"layer": i + 1, "mean": 0.0, "std": 1.0} for i in range(2)]
    fig = plot_histograms(outputs, stats, title, tmp_path / "h.png")
    fig.draw_without_rendering()
    assert fig._suptitle.get_text().startswith("init=normal std=0.05")
    assert fig.axes[0].get_ylabel().startswith("count")
    assert all(any(t.get_text() for t in ax.get_yticklabels()) for ax in fig.axes)
