"""The one validation mechanism: a parameter declares its type and range once, where the code that uses it is.

    def __init__(self, p: Annotated[float, Range(0, 1, high_open=True)] = 0.5): ...   # in a component
    deeprob train regularizer=[dropout] regularizer.dropout.p=1.5
    → deeprob train: error: regularizer.dropout.p: 1.5 is not allowed; expected a number in [0, 1)

An option's `_target_` is read for its signature: `Annotated[type, Range|Choice|Match|ListOf]` gives type and range, a plain
annotation (torch's own classes have them) gives the type; numbers are finite unless declared otherwise.
The settings outside the option groups (trainer.*, log.*, init_stats.*, eval's and the lab's keys) declare theirs
the same way in config.SETTINGS, INIT_STATS_SETTINGS, EVAL_SETTINGS and lab.runner.LAB_SETTINGS.
A component's own errors name only its parameter ("p: ..."); `config.build` adds the `group.option.` prefix.
Torch-free, so that checking a command line stays quick.
"""
import inspect
import math
import re
import typing
from dataclasses import dataclass


@dataclass(frozen=True)
class Range:
    """A number in [low, high] (either end open, either end absent); integer=True for whole numbers only; `what`
    names the quantity in the error ("a probability" → "expected a probability in [0, 1]")."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    integer: bool = False
    nullable: bool = False
    what: str | None = None

    def allows(self, value) -> bool:
        if value is None:
            return self.nullable
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.integer and not isinstance(value, int):
            return False
        if not math.isfinite(value):
            return False
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return not (self.high is not None and (value > self.high or (self.high_open and value == self.high)))

    def describe(self) -> str:
        kind = self.what or ("an integer" if self.integer else "a number")
        if self.what is None and self.integer and self.low == 1 and self.high is None and not self.low_open:
            return ("null or " if self.nullable else "") + "a positive integer"
        if self.low is not None and self.high is not None:
            text = f"{kind} in {'(' if self.low_open else '['}{_num(self.low)}, {_num(self.high)}{')' if self.high_open else ']'}"
        elif self.low is not None:
            text = f"{kind} {'>' if self.low_open else '≥'} {_num(self.low)}"
        elif self.high is not None:
            text = f"{kind} {'<' if self.high_open else '≤'} {_num(self.high)}"
        elif self.what is not None:
            text = self.what
        else:
            text = f"a finite {kind[2:] if kind.startswith('a ') else kind[3:]}"
        return ("null or " + text) if self.nullable else text


@dataclass(frozen=True)
class Choice:
    """One of the given values."""

    options: tuple
    nullable: bool = False
    what: str | None = None  # the options in words ("1 (grayscale) or 3 (RGB)")

    def __init__(self, *options, nullable: bool = False, what: str | None = None):
        object.__setattr__(self, "options", tuple(options))
        object.__setattr__(self, "nullable", nullable)
        object.__setattr__(self, "what", what)

    def allows(self, value) -> bool:
        return (value is None and self.nullable) or any(value == o and type(value) is type(o) for o in self.options)

    def describe(self) -> str:
        names = ", ".join(str(o).lower() if isinstance(o, bool) else str(o) for o in self.options)
        return ("null or " if self.nullable else "") + (self.what or f"one of {names}")


@dataclass(frozen=True)
class Kind:
    """A value of a plain type (bool, int, float = any finite number, str, list)."""

    type: type
    nullable: bool = False

    def allows(self, value) -> bool:
        if value is None:
            return self.nullable
        if self.type is bool:
            return isinstance(value, bool)
        if self.type is int:
            return isinstance(value, int) and not isinstance(value, bool)
        if self.type is float:
            return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if self.type is list:
            return isinstance(value, (list, tuple)) or type(value).__name__ == "ListConfig"
        return isinstance(value, self.type)

    def describe(self) -> str:
        text = {bool: "true or false", int: "an integer", float: "a finite number", str: "a string",
                list: "a list"}.get(self.type, self.type.__name__)
        return ("null or " if self.nullable else "") + text


@dataclass(frozen=True)
class Match:
    """A string that matches a regular expression from its start (null too when nullable); `what` names it."""

    pattern: str
    what: str
    nullable: bool = False

    def allows(self, value) -> bool:
        return (value is None and self.nullable) or (isinstance(value, str) and re.match(self.pattern, value) is not None)

    def describe(self) -> str:
        return self.what


@dataclass(frozen=True)
class ListOf:
    """A list of at least `least` items, each allowed by `item`; `what` names it in the error."""

    item: object
    least: int = 0
    what: str | None = None

    def allows(self, value) -> bool:
        return Kind(list).allows(value) and len(value) >= self.least and all(self.item.allows(v) for v in value)

    def describe(self) -> str:
        return self.what or f"a list of ≥ {self.least} items, each {self.item.describe()}"


def check_value(key: str, value, spec) -> None:
    """Raise ValueError('key: value is not allowed; expected ...') unless spec allows value."""
    if not spec.allows(value):
        raise ValueError(f"{key}: {value!r} is not allowed; expected {spec.describe()}")


def spec_of(annotation, default=inspect.Parameter.empty):
    """The spec a signature annotation declares (None: nothing to check)."""
    nullable = default is None
    if typing.get_origin(annotation) is typing.Annotated:
        base, *markers = typing.get_args(annotation)
        marker = next((m for m in markers if isinstance(m, (Range, Choice, Kind, Match, ListOf))), None)
        if marker is not None:
            return marker
        annotation = base
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        plain = [a for a in args if a is not type(None)]
        nullable = nullable or len(plain) < len(args)
        if len(plain) == 1:
            annotation = plain[0]
        elif float in plain:  # e.g. torch's `lr: float | Tensor`: a number from a config
            annotation = float
        else:
            return None
    if annotation in (bool, int, float, str):
        return Kind(annotation, nullable)
    if annotation in (list, tuple) or typing.get_origin(annotation) in (list, tuple):
        return Kind(list, nullable)
    return None


def check_params(target, params: dict) -> None:
    """Check each configured parameter against the target's signature (ValueError naming the parameter)."""
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return
    try:
        hints = typing.get_type_hints(target.__init__ if inspect.isclass(target) else target, include_extras=True)
    except Exception:  # annotations that do not resolve (forward references): the raw ones
        hints = {}
    for name, value in params.items():
        parameter = signature.parameters.get(name)
        if parameter is None:
            if any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values()):
                continue
            takes = [n for n, p in signature.parameters.items()
                     if p.default is not inspect.Parameter.empty and p.kind is not p.VAR_POSITIONAL]
            raise ValueError(f"{name}: no such parameter of {getattr(target, '__name__', target)}; it takes: "
                             f"{', '.join(takes) or 'none'}")
        spec = spec_of(hints.get(name, parameter.annotation), parameter.default)
        if spec is None and parameter.default not in (inspect.Parameter.empty, None):
            spec = spec_of(type(parameter.default))  # unannotated: the type of the default written in the code
        if spec is not None:
            check_value(name, value, spec)


def _num(x) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)
