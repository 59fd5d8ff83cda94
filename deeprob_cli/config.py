"""Configuration checks and component building, shared by `deeprob train` and `deeprob eval`.

`check(cfg)` validates every value before any work starts; `build(cfg.<group>)` instantiates an option's
`_target_` and turns a bad parameter into one line that names the key.
"""
from pathlib import Path

import torch
from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, ListConfig

from . import UserError
from .components.regularizer import check_fits
from .models import MLP

CONFIG_DIR = Path(__file__).resolve().parent.parent / "conf"
if not CONFIG_DIR.is_dir():  # installed from a wheel: conf/ ships inside the package
    CONFIG_DIR = Path(__file__).resolve().parent / "conf"


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _require(ok: bool, key: str, value, allowed: str):
    if not ok:
        raise UserError(f"{key}: {value!r} is not allowed; expected {allowed}")


def check(cfg: DictConfig):
    """Raise UserError naming the first key whose value is out of its range."""
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


def to_plain(node):
    """A DictConfig/ListConfig as plain Python containers (checkpoint- and JSON-safe)."""
    from omegaconf import OmegaConf

    if isinstance(node, (DictConfig, ListConfig)):
        return OmegaConf.to_container(node, resolve=True)
    return node
