"""Configuration checks and component building, shared by `deeprob train` and `deeprob eval`.

`precheck(args)` composes a command line's config the way Hydra will and checks it, so that a mistake is one
line and exit code 2 before Hydra creates a run folder; `check(cfg, choices)` validates every value (ranges, and
each option's parameters against the types of its YAML defaults); `build(cfg.<group>)` instantiates an option's
`_target_` and turns a bad parameter into one line that names the key.
"""

import torch
from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from . import CONFIG_DIR, UserError
from .components.regularizer import check_fits
from .models import MLP



def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _require(ok: bool, key: str, value, allowed: str):
    if not ok:
        raise UserError(f"{key}: {value!r} is not allowed; expected {allowed}")


def check(cfg: DictConfig, choices: dict | None = None):
    """Raise UserError naming the first key whose value is out of its range or of the wrong type."""
    if choices:
        check_params(cfg, choices)
    t, d = cfg.trainer, cfg.dataset
    _require(_is_int(t.epochs) and t.epochs > 0, "trainer.epochs", t.epochs, "a positive integer")
    _require(_is_int(t.batch_size) and t.batch_size > 0, "trainer.batch_size", t.batch_size, "a positive integer")
    _require(_is_int(t.eval_batch_size) and t.eval_batch_size > 0, "trainer.eval_batch_size", t.eval_batch_size,
             "a positive integer")
    _require(_is_int(t.seed), "trainer.seed", t.seed, "an integer")
    _require(t.threads is None or (_is_int(t.threads) and t.threads > 0), "trainer.threads", t.threads,
             "null or a positive integer")
    _require(t.device in ("auto", "cpu", "cuda") or str(t.device).startswith("cuda:"), "trainer.device", t.device,
             "auto, cpu or cuda")
    if str(t.device).startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"trainer.device: {t.device!r} asked for, but this machine has no CUDA device; "
                        f"use trainer.device=auto or cpu")
    _require(_is_int(t.checkpoint_every) and t.checkpoint_every >= 0, "trainer.checkpoint_every",
             t.checkpoint_every, "an integer ≥ 0 (0 = at epoch ends only)")
    _require(isinstance(t.sync_bn, bool), "trainer.sync_bn", t.sync_bn, "true or false")
    _require(cfg.resume is None or isinstance(cfg.resume, str), "resume", cfg.resume, "null, auto or a run folder")
    _require(_is_int(cfg.log.hist_every) and cfg.log.hist_every >= 0, "log.hist_every", cfg.log.hist_every,
             "an integer ≥ 0 (0 = no histograms)")
    _require(cfg.log.progress in ("auto", True, False), "log.progress", cfg.log.progress, "auto, true or false")
    _require(d.subset is None or (_is_int(d.subset) and d.subset > 0), "dataset.subset", d.subset,
             "null or a positive integer")
    _require(_is_int(d.val_size) and d.val_size >= 0, "dataset.val_size", d.val_size, "an integer ≥ 0")
    _require(isinstance(cfg.optim.lr, (int, float)) and not isinstance(cfg.optim.lr, bool) and cfg.optim.lr > 0,
             "optim.lr", cfg.optim.lr, "a number > 0")
    for group in ("augment", "regularizer"):
        node = cfg.get(group)
        _require(node is None or isinstance(node, DictConfig), group, node,
                 f"a list of options, e.g. {group}=[a,b], a single option or {group}=none")

    # ---- cross-group rules: preprocess ↔ model ----
    preprocess, model = get_class(cfg.preprocess._target_), get_class(cfg.model._target_)
    if not getattr(preprocess, "keeps_layout", True) and not issubclass(model, MLP):
        raise UserError(f"preprocess: {preprocess.__name__.lower()} gives component coordinates, not an image, so "
                        f"model={model.__name__.lower()} cannot use it; use model=mlp, or preprocess=whiten "
                        f"(decorrelates and keeps the pixel layout)")
    # ---- cross-group rules: a selected regularizer needs a place in the chosen model (stochastic_depth: resnet, ...)
    check_fits(selected(cfg, "regularizer"), cfg.model)


def _kind(default):
    if isinstance(default, bool):
        return "true or false", lambda v: isinstance(v, bool)
    if isinstance(default, int):
        return "an integer", _is_int
    if isinstance(default, float):
        return "a number", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
    if isinstance(default, str):
        return "a string", lambda v: isinstance(v, str)
    if isinstance(default, (list, ListConfig)):
        return "a list", lambda v: isinstance(v, (list, ListConfig))
    return None, None


def check_params(cfg: DictConfig, choices: dict):
    """Each option's parameters must have the type of their defaults in the option's own YAML file."""
    chosen = [(g, n, cfg.get(g)) for g, n in choices.items() if isinstance(n, str) and (CONFIG_DIR / g).is_dir()]
    for group in ("augment", "regularizer"):
        chosen += [(f"{group}.{name}", f"{group}/{name}", node) for name, node in selected(cfg, group).items()]
    for key, option, node in chosen:
        path = CONFIG_DIR / f"{option if '/' in option else f'{key}/{option}'}.yaml"
        if node is None or not path.is_file():
            continue
        for param, default in (OmegaConf.load(path) or {}).items():
            kind, ok = _kind(default)
            value = node.get(param)
            if kind and value is not None and not ok(value):
                raise UserError(f"{key}.{param}: {value!r} is not allowed; expected {kind} (default {default!r} in "
                                f"conf/{path.relative_to(CONFIG_DIR)})")


def precheck(args):
    """Compose and check what `deeprob train ARGS` will run (a sweep: its first job), before Hydra starts."""
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    lines = [a for a in args if "=" in a and not a.startswith("-")]
    try:
        overrides = OverridesParser.create().parse_overrides(lines)
    except HydraException as e:
        raise UserError(f"cannot read the overrides: {str(e).strip().splitlines()[0]}") from None
    first = []
    for o in overrides:
        key = o.get_key_element().lstrip("+~")
        if o.is_sweep_override():
            try:
                values = list(o.sweep_string_iterator())
            except HydraException:  # interval()/tag(): a search space for a sweeper, not values
                continue
            first.append(f"{o.get_key_element()}={values[0]}")
        else:
            values = [o.value()]
            first.append(o.input_line)
        if (CONFIG_DIR / key).is_dir():
            for value in values:
                names = value if isinstance(value, list) else str(value).strip("[]").split(",")
                _require_options(key, [str(n).strip() for n in names if str(n).strip()])
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose(config_name="train", overrides=first, return_hydra_config=True)
    except HydraException as e:
        message = str(e).strip().splitlines()[0]
        if "hydra" in message:  # Hydra's own settings (launchers, sweepers): Hydra reports those itself
            return
        missing = next((line.split("'")[1] for line in str(e).splitlines() if line.startswith("Could not override")),
                       None)
        if missing:
            parent = missing.rsplit(".", 1)[0] if "." in missing else ""
            with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
                base = compose(config_name="train", overrides=[f for f in first if not f.startswith(f"{missing}=")])
            node = OmegaConf.select(base, parent) if parent else base
            keys = ", ".join(k for k in node.keys() if not str(k).startswith("_")) if isinstance(node, DictConfig) else ""
            raise UserError(f"{missing}: no such key" + (f"; {parent or 'the config'} has: {keys}" if keys else "")
                            + f" (add a new key with +{missing}=...)") from None
        raise UserError(message) from None
    choices = dict(cfg.hydra.runtime.choices)
    for group in ("augment", "regularizer"):
        choices.pop(group, None)
    cfg = OmegaConf.masked_copy(cfg, [k for k in cfg.keys() if k != "hydra"])
    check(cfg, choices)
    build(cfg.activation, "activation", _partial_=False)  # the data-free components' own range checks
    for group in ("augment", "regularizer"):
        for name, node in selected(cfg, group).items():
            build(node, f"{group}.{name}")
    if cfg.get("tta") is not None:
        build(cfg.tta, "tta")


def _require_options(group: str, names):
    options = sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))
    for name in names:
        if name not in options:
            raise UserError(f"{group}={name}: no such option; choose from {', '.join(options)}")


def selected(cfg: DictConfig, group: str) -> dict:
    """The options chosen in a multi-select group, in command-line order: {name: option config}."""
    node = cfg.get(group)
    return {} if node is None else dict(node.items())


def build(node, key: str, **kwargs):
    """instantiate(node, **kwargs), with a bad parameter reported as one line naming `key`."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as e:
        cause = e.__cause__ or e
        message = str(cause).strip().splitlines()[-1] if str(cause).strip() else type(cause).__name__
        raise UserError(message if message.startswith(key) else f"{key}: {message}") from None


def flatten(node: dict, prefix: str = "") -> dict:
    """A nested dict as {"a.b.c": value}."""
    out = {}
    for key, value in node.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def to_plain(node):
    """A DictConfig/ListConfig as plain Python containers (checkpoint- and JSON-safe)."""
    from omegaconf import OmegaConf

    if isinstance(node, (DictConfig, ListConfig)):
        return OmegaConf.to_container(node, resolve=True)
    return node
