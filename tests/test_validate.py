"""The one validation mechanism (deeprob_cli.validate): every option's numeric parameters refused in one prefixed
line when not a finite number of the declared kind, for every YAML of every group (so a new option is covered
with no new test), and no component writing a full `group.key` into its own errors."""
import ast
import copy
import inspect
import math
import re
import typing
from pathlib import Path

import pytest
from hydra.utils import get_object
from omegaconf import OmegaConf

import deeprob_cli
from conftest import make_cfg
from deeprob_cli import UserError
from deeprob_cli.config import check, option_names
from deeprob_cli.validate import Choice, Kind, ListOf, Match, Range, spec_of

GROUPS = ["activation", "augment", "dataset", "init", "model", "optim", "preprocess", "regularizer", "schedule", "tta"]
MULTI = {"augment", "regularizer"}  # multi-select: an option's keys live under group.option


def numeric(spec) -> bool:
    return isinstance(spec, Range) or (isinstance(spec, Kind) and spec.type in (int, float))


def declared(target, name):
    """The spec config.check_option applies to parameter `name` of target (None: not declared)."""
    signature = inspect.signature(target)
    hints = typing.get_type_hints(target.__init__ if inspect.isclass(target) else target, include_extras=True)
    parameter = signature.parameters[name]
    spec = spec_of(hints.get(name, parameter.annotation), parameter.default)
    if spec is None and parameter.default not in (inspect.Parameter.empty, None):
        spec = spec_of(type(parameter.default))
    return spec


def numeric_parameters(group: str, option: str) -> list:
    """The numeric parameters of an option's YAML: a number there, or declared a number by its code."""
    node = OmegaConf.load(deeprob_cli.CONFIG_DIR / group / f"{option}.yaml")
    target = get_object(node._target_) if "_target_" in node else None
    names = []
    for name, value in node.items():
        if str(name).startswith("_"):
            continue
        yaml_number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if yaml_number or (target is not None and numeric(declared(target, name))):
            names.append(name)
    return names


OPTIONS = [(group, option) for group in GROUPS for option in option_names(group)]
_COMPOSED = []


def composed():
    """The real config with dataset=synthetic, composed once (each option's YAML then replaces its group)."""
    if not _COMPOSED:
        _COMPOSED.append(make_cfg("dataset=synthetic"))
    return _COMPOSED[0]
BAD = [float("nan"), "abc", True]  # not finite; not a number; a bool (Python's int subclass)


def test_every_group_has_numeric_parameters_to_check():
    counted = {group: sum(len(numeric_parameters(g, o)) for g, o in OPTIONS if g == group) for group in GROUPS}
    assert all(counted.values()), counted
    assert sum(counted.values()) >= 50  # the table below is not silently empty


@pytest.mark.parametrize("group, option", OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_numeric_parameter_refuses_non_numbers_in_one_prefixed_line(group, option):
    key = f"{group}.{option}" if group in MULTI else group
    plain = copy.deepcopy(composed())
    node = OmegaConf.load(deeprob_cli.CONFIG_DIR / group / f"{option}.yaml")  # what `group=option` puts there
    plain[group] = {option: node} if group in MULTI else node
    wrong = []
    for name in numeric_parameters(group, option):
        for bad in BAD:
            cfg = copy.deepcopy(plain)
            OmegaConf.update(cfg, f"{key}.{name}", bad, merge=False)
            try:
                check(cfg)
                wrong.append(f"{key}.{name}={bad!r}: accepted")
                continue
            except UserError as e:
                message = str(e)
            shown = repr(bad) if isinstance(bad, str) else str(bad)
            # the builder's prefix on the component's short error, one line, naming the value
            if not message.startswith(f"{key}.{name}: ") or "\n" in message or shown.lower() not in message.lower():
                wrong.append(f"{key}.{name}={bad!r}: {message}")
    assert not wrong, "\n".join(wrong)


def test_the_default_of_every_declared_parameter_is_allowed():
    """A declaration that refuses its own default would refuse every plain command."""
    for group in GROUPS:
        for option in option_names(group):
            node = OmegaConf.load(deeprob_cli.CONFIG_DIR / group / f"{option}.yaml")
            if "_target_" not in node:
                continue
            target = get_object(node._target_)
            for name, parameter in inspect.signature(target).parameters.items():
                spec = declared(target, name)
                if spec is not None and parameter.default is not inspect.Parameter.empty:
                    default = list(parameter.default) if isinstance(parameter.default, tuple) else parameter.default
                    assert spec.allows(default), f"{group}={option}: {name}={parameter.default!r} vs {spec.describe()}"
                if name in node and spec is not None:  # and the YAML's value
                    assert spec.allows(node[name]), f"{group}={option}: {name}={node[name]!r} vs {spec.describe()}"


# ---------------------------------------------------------------- no full keys written by hand in components

KEYED = re.compile(r"(?<![\w.=])(?:" + "|".join(GROUPS) + r")\.[a-z_{]")
SOURCES = sorted((Path(deeprob_cli.__file__).parent / "components").glob("*.py")) + [
    Path(deeprob_cli.__file__).parent / "models.py"]


def _text(node) -> str | None:
    """A string literal's text; an f-string's with {} where its values go (f"init.{key}" → "init.{}")."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(_text(v) or "{}" for v in node.values)
    return None


def keyed_raises(source: str) -> list:
    """(line, text) of every string inside a raise statement that writes a `group.key` by hand."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Raise) and node.exc is not None:
            texts = {_text(part) for part in ast.walk(node.exc)} - {None}
            found += [(node.lineno, text) for text in sorted(texts) if KEYED.search(text)]
    return found


def test_the_key_detector_finds_a_hand_written_key():
    assert keyed_raises('raise ValueError(f"augment.flip.p: {p!r} is not allowed")')
    assert keyed_raises('raise UserError("use regularizer.dropout.scale=train")')
    assert keyed_raises('raise ValueError(f"init.{key}: bad")')
    assert not keyed_raises('raise ValueError(f"p: {p!r} is not allowed")')
    assert not keyed_raises('raise ValueError("regularizer=dropout: scale=test has no form; use scale=train")')


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_components_raise_errors_naming_only_their_own_parameter(path):
    found = keyed_raises(path.read_text())
    assert not found, f"{path.name}: full keys written by hand (config.build adds the prefix): {found}"


# ---------------------------------------------------------------- the markers themselves

@pytest.mark.parametrize("spec, good, bad, text", [
    (Range(0, 1, what="a probability"), [0, 0.5, 1], [-0.1, 1.1, math.nan, "x", True], "a probability in [0, 1]"),
    (Range(0, 1, high_open=True, what="a drop probability"), [0, 0.99], [1, 1.0], "a drop probability in [0, 1)"),
    (Range(0, low_open=True), [1e-9, 5], [0, -1, math.inf], "a number > 0"),
    (Range(1, integer=True), [1, 7], [0, 2.0, False], "a positive integer"),
    (Range(1, integer=True, nullable=True), [None, 3], [0, "3"], "null or a positive integer"),
    (Range(nullable=True), [None, -3.5, 0], [math.nan, "high"], "null or a finite number"),
    (Choice("fan_in", "fan_out"), ["fan_in"], ["fan", 1, None], "one of fan_in, fan_out"),
    (Choice(1, 3, what="1 (grayscale) or 3 (RGB)"), [1, 3], [2, 3.0, True, "3"], "1 (grayscale) or 3 (RGB)"),
    (Match(r"[0-9a-f]{4}\Z", "4 hex digits"), ["beef", "0000"], ["beefs", "bee", None, 1234], "4 hex digits"),
    (Match(r"(?s).*\S", "a folder path", nullable=True), [None, "data", " x"], ["", "  ", 0], "a folder path"),
    (ListOf(Range(1, integer=True), least=2), [[1, 2], [4, 4, 4]], [[1], [0, 1], [1, 2.5], "12", None],
     "a list of ≥ 2 items, each a positive integer"),
])
def test_markers_allow_and_describe(spec, good, bad, text):
    assert all(spec.allows(v) for v in good)
    assert not any(spec.allows(v) for v in bad)
    assert spec.describe() == text
