"""Datasets (conf/dataset/) as in-memory uint8 tensors. Try: deeprob train dataset=synthetic

Every split is held whole as one uint8 tensor (N,C,H,W) plus int64 labels; training gathers batches by
index on the training device, so there are no DataLoader workers and no per-image Python work per step.
Readers: `cifar10` (the official python pickles), `image_folder` (root/train/<class>/*.png|jpg|jpeg|bmp,
decoded once into a cache), `synthetic` (generated per seed).
"""
import hashlib
import io
import os
import pickle
import tarfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import UserError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}
CIFAR10_DIR = "cifar-10-batches-py"


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


def load_data(cfg) -> Data:
    """Read the dataset that cfg (the `dataset` group) names, hold out validation, take the subset."""
    readers = {"cifar10": read_cifar10, "image_folder": read_image_folder, "synthetic": make_synthetic}
    train, test, classes = readers[cfg.name](cfg)
    train, val = hold_out(train, cfg.val_size, cfg.split_seed)
    if cfg.subset is not None:
        if cfg.subset > len(train):
            raise UserError(f"dataset.subset: {cfg.subset} is larger than the {len(train)} training images "
                            f"left after the validation hold-out; use at most {len(train)} or null")
        train = train.take(slice(0, cfg.subset))
    return Data(train, val, test, classes)


def hold_out(train: Split, val_size: int, seed: int):
    """Split train into (train, val) with a fixed permutation; val is None when val_size is 0."""
    if val_size == 0:
        return train, None
    if val_size >= len(train):
        raise UserError(f"dataset.val_size: {val_size} leaves no training images out of {len(train)}; "
                        f"use a value below {len(train)} (0 = no validation)")
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
    return train.take(order[val_size:]), train.take(order[:val_size])


# ---------------------------------------------------------------- cifar10 (official python pickles)

class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles only plain containers and numpy arrays: a CIFAR-10 batch file cannot run code."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}  # protocol-2 bytes

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _read_pickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return _ArrayUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError) as e:
        raise UserError(f"dataset.root: {path} is not a readable CIFAR-10 batch file ({e}); "
                        f"delete {path.parent} and download again") from None


def _cifar_batch(path: Path) -> Split:
    batch = _read_pickle(path)
    try:
        data = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except (KeyError, ValueError, TypeError) as e:
        raise UserError(f"dataset.root: {path} is not a CIFAR-10 batch ({e!r} in its content)") from None
    if len(data) != len(labels) or labels.min() < 0 or labels.max() > 9:
        raise UserError(f"dataset.root: {path} has {len(data)} images, {len(labels)} labels in 0..9 expected")
    return Split(torch.from_numpy(data.copy()), torch.from_numpy(labels))


def read_cifar10(cfg):
    """The official CIFAR-10 python version: data_batch_1..5 (train), test_batch, batches.meta."""
    root = Path(cfg.root).expanduser()
    folder = root / CIFAR10_DIR
    if not folder.is_dir() and cfg.download:
        _download_cifar10(root, cfg.url, cfg.md5)
    names = [f"data_batch_{i}" for i in range(1, 6)]
    missing = [n for n in names + ["test_batch", "batches.meta"] if not (folder / n).is_file()]
    if missing:
        raise UserError(f"dataset.root: no CIFAR-10 at {folder.resolve()} (missing {', '.join(missing)}); "
                        f"add dataset.download=true, point dataset.root at the folder holding {CIFAR10_DIR}/, "
                        f"or use dataset=image_folder dataset.root=PATH")
    parts = [_cifar_batch(folder / n) for n in names]
    train = Split(torch.cat([p.images for p in parts]), torch.cat([p.labels for p in parts]))
    classes = [c.decode() for c in _read_pickle(folder / "batches.meta")[b"label_names"]]
    return train, _cifar_batch(folder / "test_batch"), classes


def _download_cifar10(root: Path, url: str, md5: str):
    from torchvision.datasets.utils import download_and_extract_archive

    try:
        download_and_extract_archive(url, str(root), md5=md5)
    except RuntimeError as e:  # torchvision's word for a failed MD5 check
        archive = root / os.path.basename(url)
        if archive.exists():
            archive.unlink()  # never leave a corrupt archive that a later run would trust
        raise UserError(f"dataset.download: the archive from {url} failed its MD5 check ({e}); it was deleted, "
                        f"try again or copy {CIFAR10_DIR}/ under dataset.root by hand") from None
    except (OSError, tarfile.TarError) as e:
        raise UserError(f"dataset.download: could not fetch {url} ({e}); without internet, copy {CIFAR10_DIR}/ "
                        f"under dataset.root={root} or use dataset=image_folder") from None


# ---------------------------------------------------------------- image_folder

def cache_dir() -> Path:
    """Where decoded image folders are cached: $DEEPROB_CACHE, else ~/.cache/deeprob."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "deeprob"
    return Path(os.environ.get("DEEPROB_CACHE", default))


def _list_images(folder: Path):
    if not folder.is_dir():
        return None
    classes = sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    files, labels = [], []
    for label, name in enumerate(classes):
        found = sorted(p for p in (folder / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            raise UserError(f"dataset.root: class folder {folder / name} holds no .png/.jpg/.jpeg/.bmp image; "
                            f"remove it or add images")
        files += found
        labels += [label] * len(found)
    return classes, files, labels


def _decode(path: Path, mode: str | None):
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = img.convert(mode or ("L" if img.mode in ("1", "L", "I", "I;16", "F") else "RGB"))
            array = np.asarray(img, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise UserError(f"dataset.root: cannot read image {path} ({e}); remove or replace it") from None
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def _decode_split(folder: Path, files, labels) -> Split:
    first = _decode(files[0], None)
    mode = "L" if first.shape[0] == 1 else "RGB"
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:  # PIL releases the GIL while decoding
        arrays = list(pool.map(lambda p: _decode(p, mode), files))
    for path, array in zip(files, arrays):
        if array.shape != first.shape:
            raise UserError(f"dataset.root: {path} is {array.shape[2]}×{array.shape[1]} but {files[0]} is "
                            f"{first.shape[2]}×{first.shape[1]}; all images of one dataset must share a size")
    return Split(torch.from_numpy(np.stack(arrays)), torch.tensor(labels, dtype=torch.int64))


def _cached_split(folder: Path):
    listing = _list_images(folder)
    if listing is None:
        return None, None
    classes, files, labels = listing
    key = hashlib.sha1(str(folder.resolve()).encode())
    for path in files:
        stat = path.stat()
        key.update(f"{path.name}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
    cache = cache_dir() / f"image_folder-{key.hexdigest()[:20]}.pt"
    if cache.is_file():
        try:
            saved = torch.load(cache, weights_only=True)
            return Split(saved["images"], saved["labels"]), saved["classes"]
        except Exception:  # a torn or foreign cache file is only a cache: decode again
            pass
    split = _decode_split(folder, files, labels)
    cache.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save({"images": split.images, "labels": split.labels, "classes": classes}, buffer)
    tmp = cache.with_suffix(f".tmp{os.getpid()}")
    tmp.write_bytes(buffer.getvalue())
    os.replace(tmp, cache)  # atomic: a concurrent reader sees the old or the whole new file
    return split, classes


def read_image_folder(cfg):
    """root/train/<class>/*.png|jpg|jpeg|bmp, and root/test/<class>/... if present."""
    if cfg.root is None:
        raise UserError("dataset.root: not set; dataset=image_folder needs dataset.root=PATH "
                        "(a folder holding train/<class>/ images)")
    root = Path(cfg.root).expanduser()
    if not (root / "train").is_dir():
        raise UserError(f"dataset.root: {root.resolve()} has no train/ folder; expected "
                        f"{root}/train/<class>/*.png|jpg|jpeg|bmp")
    train, classes = _cached_split(root / "train")
    test, test_classes = _cached_split(root / "test")
    if test is not None and test_classes != classes:
        raise UserError(f"dataset.root: the classes of {root / 'test'} ({', '.join(test_classes)}) differ from "
                        f"those of {root / 'train'} ({', '.join(classes)})")
    if test is not None and test.images.shape[1:] != train.images.shape[1:]:
        raise UserError(f"dataset.root: test images are {tuple(test.images.shape[1:])}, train images "
                        f"{tuple(train.images.shape[1:])}; they must share a size")
    return train, test, classes


# ---------------------------------------------------------------- synthetic

def make_synthetic(cfg):
    """Each class is a smooth random template; an image is its template plus Gaussian pixel noise."""
    g = torch.Generator().manual_seed(cfg.seed)
    size, channels = cfg.image_size, cfg.channels
    coarse = torch.rand(cfg.num_classes, channels, 4, 4, generator=g) * 175 + 40
    templates = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)

    def draw(n):
        labels = torch.randint(0, cfg.num_classes, (n,), generator=g)
        noise = torch.randn(n, channels, size, size, generator=g) * cfg.noise
        return Split((templates[labels] + noise).round().clamp(0, 255).to(torch.uint8), labels)

    train, test = draw(cfg.num_train), draw(cfg.num_test) if cfg.num_test else None
    return train, test, [f"class{i}" for i in range(cfg.num_classes)]
