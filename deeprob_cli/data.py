"""Datasets (conf/dataset/) as in-memory uint8 tensors. Try: deeprob train dataset=synthetic

Every split is held whole as one uint8 tensor (N,C,H,W) plus int64 labels; training gathers batches by
index on the training device, so there are no DataLoader workers and no per-image Python work per step.
Each kind is a module of deeprob_cli/datasets/ (cifar10: the official python pickles, downloaded when missing;
image_folder: root/train/<class>/*.png|jpg|jpeg|bmp, decoded once into a content-addressed cache; synthetic:
generated per seed) whose class declares its parameters in its signature; `load_data` builds the one that
conf/dataset/<kind>.yaml's `_target_` names, reads it, holds out validation and takes the subset.
"""
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import torch

from . import UserError
from .config import build
from .validate import Match, Range

log = logging.getLogger("deeprob")
_fallback_caches = {}

# the keys every dataset kind has, declared once (each kind's signature names them)
Root = Annotated[str | None, Match(r"(?s).*\S", "a folder path", nullable=True)]
Subset = Annotated[int | None, Range(1, integer=True, nullable=True)]  # null = the whole train split
ValSize = Annotated[int, Range(0, integer=True)]  # images held out of train for validation; 0 = none
SplitSeed = Annotated[int, Range(0, 2**63 - 1, integer=True)]  # the hold-out's seed (torch.Generator's range)

@dataclass
class Split:
    images: torch.Tensor  # uint8 (N, C, H, W)
    labels: torch.Tensor  # int64 (N,)

    def __len__(self):
        return len(self.labels)

    def take(self, index):
        return Split(self.images[index], self.labels[index])


@dataclass
class Data:
    train: Split
    val: Split | None
    test: Split | None
    classes: list

    @property
    def shape(self):
        return tuple(self.train.images.shape[1:])


class Dataset:
    """A dataset kind (conf/dataset/<kind>.yaml's `_target_`): read() → (train, test or None, class names)."""

    def __init__(self, subset: Subset = None, val_size: ValSize = 5000, split_seed: SplitSeed = 0):
        self.subset, self.val_size, self.split_seed = subset, val_size, split_seed

    def check(self, min_side: int = 1, needed_by: str = ""):
        """What can be refused before reading (a generated kind knows its image size and memory)."""

    def read(self) -> tuple:
        raise NotImplementedError


def load_data(cfg, min_side: int = 1, needed_by: str = "") -> Data:
    """Read the dataset that cfg (the `dataset` group) names, hold out validation, take the subset.

    min_side, needed_by: images smaller than min_side pixels on a side are refused, naming needed_by."""
    dataset = build(cfg, "dataset")  # its declared parameters checked: one line naming dataset.KEY
    dataset.check(min_side, needed_by)
    train, test, classes = dataset.read()
    check_image_size(tuple(train.images.shape[1:]), min_side, needed_by)
    train, val = hold_out(train, dataset.val_size, dataset.split_seed)
    if dataset.subset is not None:
        if dataset.subset > len(train):
            raise UserError(f"dataset.subset: {dataset.subset} is larger than the {len(train)} training images "
                            f"left after the validation hold-out; use at most {len(train)} or null")
        train = train.take(slice(0, dataset.subset))
    return Data(train, val, test, classes)


def check_image_size(shape, min_side: int, needed_by: str = "", fix: str = "use larger images"):
    """Raise UserError when (C, H, W) images are smaller than min_side pixels on a side."""
    _, h, w = shape
    if min(h, w) < min_side:
        why = f" by {needed_by}" if needed_by else ""
        raise UserError(f"dataset: images are {w}×{h} pixels but at least {min_side}×{min_side} are needed{why}; "
                        f"{fix}")


def hold_out(train: Split, val_size: int, seed: int):
    """Split train into (train, val) with a fixed permutation; val is None when val_size is 0."""
    if val_size == 0:
        return train, None
    if val_size >= len(train):
        raise UserError(f"dataset.val_size: {val_size} leaves no training images out of {len(train)}; "
                        f"use a value below {len(train)} (0 = no validation)")
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
    return train.take(order[val_size:]), train.take(order[:val_size])


def cache_dir() -> Path:
    """Where decoded image folders and fitted statistics are cached: $DEEPROB_CACHE, else ~/.cache/deeprob.

    A cache folder that cannot be used (a file, read-only, not creatable) costs a warning, not the run: this
    process then caches in a temporary folder removed at exit."""
    default = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "deeprob"
    wanted = Path(os.environ.get("DEEPROB_CACHE") or default).expanduser()
    if wanted in _fallback_caches:
        return _fallback_caches[wanted]
    try:
        wanted.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=wanted).close()  # writable, not only present
        return wanted
    except OSError as e:
        import atexit

        reason = "it is a file" if wanted.is_file() else e.strerror or e
        try:
            fallback = Path(tempfile.mkdtemp(prefix="deeprob-cache-"))
        except OSError as again:
            raise UserError(f"DEEPROB_CACHE: cannot use {_shown(wanted)} ({reason}) nor a temporary folder "
                            f"({again.strerror or again}); set DEEPROB_CACHE to a writable folder") from None
        atexit.register(shutil.rmtree, fallback, True)
        _fallback_caches[wanted] = fallback
        log.warning(f"DEEPROB_CACHE: cannot use {_shown(wanted)} as a cache folder ({reason}); "
                    f"caching in {fallback} for this run only; set DEEPROB_CACHE to a writable folder")
        return fallback


def _shown(path) -> str:
    """path for a message: bytes that are not UTF-8 (surrogate-escaped by os) as \\xNN, never an encode error."""
    return os.fsencode(str(path)).decode("utf-8", "backslashreplace")


def _shown(path) -> str:
    """path for a message: bytes that are not UTF-8 (surrogate-escaped by os) as \\xNN, never an encode error."""
    return os.fsencode(str(path)).decode("utf-8", "backslashreplace")
