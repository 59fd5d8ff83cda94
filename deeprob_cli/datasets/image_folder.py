"""`dataset=image_folder`: root/train/<class>/*.png|jpg|jpeg|bmp (and root/test/<class>/...), decoded once into a
content-addressed cache (data.cache_dir()) keyed by every file's path, size and content and by the decode rule.

    deeprob train dataset=image_folder dataset.root=/tmp/data/cifar10-jpeg
"""
import hashlib
import io
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from .. import UserError
from ..data import Dataset, Root, SplitSeed, Split, Subset, ValSize, _shown, cache_dir, log

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}


class ImageFolder(Dataset):
    """conf/dataset/image_folder.yaml: its parameters, declared once."""

    def __init__(self, root: Root = None, download: bool = False, subset: Subset = None, val_size: ValSize = 5000,
                 split_seed: SplitSeed = 0):
        super().__init__(subset, val_size, split_seed)
        self.root, self.download = root, download  # (an image folder cannot be downloaded: every kind has the key)

    def read(self):
        return read_image_folder(self)


# The decode rule (README "Data"), one for every file, whatever sorts first:
# - grayscale modes (1, L, LA, I;16*, I) give one channel, every other mode (RGB, RGBA, P, CMYK, YCbCr, ...)
#   three; alpha is dropped, palettes are expanded;
# - 16-bit samples keep their high byte (v >> 8: 65535 → 255, 257·k → k), the same as PIL does for 16-bit colour
#   PNGs, so a 16-bit image is scaled into 0..255, never clipped;
# - a split is grayscale only if every image is; otherwise grayscale images are repeated to R = G = B.
# Bump DECODE_RULE whenever the pixels that some file decodes to change: every older cache stops matching.
DECODE_RULE = 2
GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N"}


def _scan(folder: Path, wanted=lambda name: True):
    """The visible entries of folder whose names are wanted, sorted; a wanted link that leads nowhere is refused."""
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as e:
        raise UserError(f"dataset.root: cannot list {_shown(folder)} ({e.strerror or e}); "
                        f"check its permissions") from None
    for entry in entries:
        if entry.name.startswith(".") or not wanted(entry.name):  # hidden: .DS_Store, macOS ._x.jpg, ...
            continue
        if entry.is_symlink() and not os.path.exists(entry.path):
            raise UserError(f"dataset.root: {_shown(entry.path)} is a dangling or looping symbolic link; "
                            f"remove it or point it at an existing file")
        yield entry


def _is_image(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES


def _list_images(folder: Path):
    """(classes, files, labels) of folder/<class>/<image>, sorted by name; None when folder does not exist."""
    if not folder.is_dir():
        return None
    classes = []
    for entry in _scan(folder):
        if entry.is_dir():
            try:
                entry.name.encode("utf-8")
            except UnicodeEncodeError:
                raise UserError(f"dataset.root: the class folder name {_shown(entry.path)} is not valid UTF-8; "
                                f"rename it (class names go into logs and summary.json)") from None
            classes.append(entry.name)
    if len(classes) < 2:
        raise UserError(f"dataset.root: {_shown(folder)} holds {len(classes)} class folder(s); at least 2 are "
                        f"needed, as {_shown(folder)}/<class>/*.png|jpg|jpeg|bmp")
    files, labels = [], []
    for label, name in enumerate(classes):
        found = [Path(e.path) for e in _scan(folder / name, _is_image) if e.is_file()]
        if not found:
            raise UserError(f"dataset.root: class folder {_shown(folder / name)} holds no .png/.jpg/.jpeg/.bmp "
                            f"image; remove it or add images")
        files += found
        labels += [label] * len(found)
    return classes, files, labels


def _parallel(fn, items, chunk: int = 512):
    """[fn(x) for x in items] on a few threads (file reads, hashing and PIL decoding release the GIL).

    Items go in chunks: one future per tiny file cost more than reading it (50,000 files: 1.4 s vs 0.4 s)."""
    chunks = [items[i:i + chunk] for i in range(0, len(items), chunk)]
    pool = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 2))
    try:
        return [y for part in pool.map(lambda xs: [fn(x) for x in xs], chunks) for y in part]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # after an error, do not decode the rest for nothing


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise UserError(f"dataset.root: cannot read image {_shown(path)} ({e.strerror or e}); "
                        f"remove or replace it") from None


def _fingerprint(data: bytes):
    """(size, content hash) of one file: what identifies its pixels, whatever its mtime says."""
    return len(data), hashlib.blake2b(data, digest_size=16).digest()


def _cache_key(folder: Path, classes, files, fingerprints) -> str:
    """Everything a decoded split depends on: rule version, class list, each file's path (class folder
    included, as raw bytes), size and content hash. Equal keys mean equal tensors; the folder's location is
    not part of it, so a moved or copied folder reuses its cache."""
    h = hashlib.blake2b(digest_size=20)
    h.update(f"deeprob image_folder decode rule {DECODE_RULE}\0{len(classes)}\0".encode())
    for name in classes:
        h.update(name.encode() + b"\0")
    start = len(str(folder)) + 1
    for path, (size, digest) in zip(files, fingerprints):
        rel = os.fsencode(str(path)[start:])  # <class>/<file>: a move between classes changes the key
        h.update(len(rel).to_bytes(4, "little") + rel + size.to_bytes(8, "little") + digest)
    return h.hexdigest()


def _decode(path: Path, data: bytes) -> np.ndarray:
    """One image as uint8 (1, H, W) for a grayscale mode or (3, H, W) for any other (DECODE_RULE above)."""
    from PIL import Image

    width = height = None
    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
            if width * height > Image.MAX_IMAGE_PIXELS:
                raise Image.DecompressionBombError("over MAX_IMAGE_PIXELS")
            if img.mode.startswith("I"):  # 16-bit (or 32-bit int) grayscale: keep the high byte of 0..65535
                array = (np.asarray(img).astype(np.int64).clip(0, 65535) >> 8).astype(np.uint8)
            elif img.mode in GRAY_MODES:
                array = np.asarray(img.convert("L"))
            else:
                if img.mode == "P" and "transparency" in img.info:
                    img = img.convert("RGBA")  # PIL's own advice for palettes with transparency
                array = np.asarray(img.convert("RGB"))
    except Image.DecompressionBombError as e:
        declared = re.search(r"(\d+)\D*pixels", str(e))  # PIL's own check says only "Image size (N pixels) ..."
        size = f"{width}×{height} pixels" if width else f"{int(declared[1]):,} pixels" if declared else e
        raise UserError(f"dataset.root: {_shown(path)} declares {size}, over the {Image.MAX_IMAGE_PIXELS:,} that "
                        f"are safe to decode (a decompression bomb?); remove it") from None
    except Image.UnidentifiedImageError:
        raise UserError(f"dataset.root: cannot read image {_shown(path)} (not a PNG, JPEG or BMP file); "
                        f"remove or replace it") from None
    except Exception as e:  # PIL reports broken files with many exception types (OSError, SyntaxError, ...)
        raise UserError(f"dataset.root: cannot read image {_shown(path)} ({type(e).__name__}: {e}); "
                        f"remove or replace it") from None
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def _decode_split(files, labels):
    """Decode every file; returns (Split, each file's fingerprint of the very bytes decoded)."""
    def work(path):
        data = _read(path)
        return _fingerprint(data), _decode(path, data)

    results = _parallel(work, files)
    arrays = [array for _, array in results]
    sizes = {}
    for i, array in enumerate(arrays):
        sizes.setdefault(array.shape[1:], []).append(i)
    if len(sizes) > 1:
        common = max(sizes, key=lambda s: len(sizes[s]))
        odd = next(i for i, a in enumerate(arrays) if a.shape[1:] != common)
        h, w = arrays[odd].shape[1:]
        raise UserError(f"dataset.root: {_shown(files[odd])} is {w}×{h} but {len(sizes[common])} of the "
                        f"{len(files)} images (e.g. {_shown(files[sizes[common][0]])}) are {common[1]}×{common[0]}; "
                        f"all images of one dataset must share a size: resize or remove the others")
    channels = max(a.shape[0] for a in arrays)  # 3 as soon as one image has colour (DECODE_RULE)
    shape = (channels, *arrays[0].shape[1:])
    images = np.stack([np.broadcast_to(a, shape) for a in arrays])
    split = Split(torch.from_numpy(images), torch.tensor(labels, dtype=torch.int64))
    return split, [fingerprint for fingerprint, _ in results]


def _load_cache(key: str, classes, count: int):
    for path in cache_dir().glob(f"image_folder-*-{key}.pt"):
        try:
            saved = torch.load(path, weights_only=True)
            if saved["key"] == key and saved["classes"] == classes and len(saved["labels"]) == count:
                return Split(saved["images"], saved["labels"])
        except Exception:  # a torn or foreign cache file is only a cache: decode again
            pass
    return None


def _save_cache(folder: Path, key: str, split: Split, classes):
    """Write the split under its key (atomically), replacing this folder's older caches; best effort."""
    place = hashlib.blake2b(os.fsencode(folder.resolve()), digest_size=6).hexdigest()
    directory = cache_dir()
    path = directory / f"image_folder-{place}-{key}.pt"
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        buffer = io.BytesIO()
        torch.save({"images": split.images, "labels": split.labels, "classes": classes, "key": key}, buffer)
        tmp.write_bytes(buffer.getvalue())
        os.replace(tmp, path)  # atomic: a concurrent reader sees the old or the whole new file
        for old in directory.glob(f"image_folder-{place}-*.pt"):
            if old != path:
                old.unlink(missing_ok=True)  # an older state of this folder: it can never match again
        for legacy in directory.glob("image_folder-" + "[0-9a-f]" * 20 + ".pt"):
            legacy.unlink(missing_ok=True)  # keyed by names and mtimes (before DECODE_RULE 2): never read again
        for torn in directory.glob(f".image_folder-{place}-*.pt.tmp*"):
            if not _alive(torn.name.rpartition(".tmp")[2]):
                torn.unlink(missing_ok=True)  # left by a process killed while writing
    except OSError as e:
        log.warning(f"DEEPROB_CACHE: could not write {path} ({e.strerror or e}); the next run decodes "
                    f"{_shown(folder)} again")
    finally:
        tmp.unlink(missing_ok=True)


def _alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:  # someone else's live process
        pass
    return True


def _cached_split(folder: Path):
    """(Split, classes) of folder/<class>/..., from the cache when its key matches; (None, None) if absent."""
    listing = _list_images(folder)
    if listing is None:
        return None, None
    classes, files, labels = listing
    key = _cache_key(folder, classes, files, _parallel(lambda p: _fingerprint(_read(p)), files))
    split = _load_cache(key, classes, len(files))
    if split is None:
        split, decoded = _decode_split(files, labels)
        # keyed by the bytes actually decoded, so a file changed since the first read cannot go stale
        _save_cache(folder, _cache_key(folder, classes, files, decoded), split, classes)
    return split, classes


def read_image_folder(cfg):
    """root/train/<class>/*.png|jpg|jpeg|bmp, and root/test/<class>/... if present."""
    if cfg.root is None:
        raise UserError("dataset.root: not set; dataset=image_folder needs dataset.root=PATH "
                        "(a folder holding train/<class>/ images)")
    root = Path(cfg.root).expanduser()
    if not (root / "train").is_dir():
        raise UserError(f"dataset.root: {_shown(root.resolve())} has no train/ folder; expected "
                        f"{_shown(root)}/train/<class>/*.png|jpg|jpeg|bmp")
    train, classes = _cached_split(root / "train")
    test, test_classes = _cached_split(root / "test")
    if test is None:
        return train, None, classes
    if test_classes != classes:
        raise UserError(f"dataset.root: the classes of {_shown(root / 'test')} ({', '.join(test_classes)}) differ "
                        f"from those of {_shown(root / 'train')} ({', '.join(classes)})")
    if test.images.shape[2:] != train.images.shape[2:]:
        raise UserError(f"dataset.root: test images are {tuple(test.images.shape[1:])}, train images "
                        f"{tuple(train.images.shape[1:])}; they must share a size")
    if train.images.shape[1] != test.images.shape[1]:  # one rule for both splits: colour wins
        train, test = (Split(s.images.expand(-1, 3, -1, -1).contiguous(), s.labels) for s in (train, test))
    return train, test, classes
