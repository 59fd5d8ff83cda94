"""Datasets (conf/dataset/) as in-memory uint8 tensors. Try: deeprob train dataset=synthetic

Every split is held whole as one uint8 tensor (N,C,H,W) plus int64 labels; training gathers batches by
index on the training device, so there are no DataLoader workers and no per-image Python work per step.
Readers: `cifar10` (the official python pickles, downloaded when missing), `image_folder`
(root/train/<class>/*.png|jpg|jpeg|bmp, decoded once into a content-addressed cache), `synthetic` (generated
per seed). `check_dataset` validates the `dataset` group's values before anything is read.
"""
import hashlib
import http.client
import io
import logging
import math
import os
import pickle
import re
import shutil
import ssl
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import UserError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}
CIFAR10_DIR = "cifar-10-batches-py"
CIFAR10_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]
log = logging.getLogger("deeprob")


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


def load_data(cfg, min_side: int = 1, needed_by: str = "") -> Data:
    """Read the dataset that cfg (the `dataset` group) names, hold out validation, take the subset.

    min_side, needed_by: images smaller than min_side pixels on a side are refused, naming needed_by."""
    check_dataset(cfg, min_side, needed_by)
    readers = {"cifar10": read_cifar10, "image_folder": read_image_folder, "synthetic": make_synthetic}
    train, test, classes = readers[cfg.name](cfg)
    check_image_size(tuple(train.images.shape[1:]), min_side, needed_by)
    train, val = hold_out(train, cfg.val_size, cfg.split_seed)
    if cfg.subset is not None:
        if cfg.subset > len(train):
            raise UserError(f"dataset.subset: {cfg.subset} is larger than the {len(train)} training images "
                            f"left after the validation hold-out; use at most {len(train)} or null")
        train = train.take(slice(0, cfg.subset))
    return Data(train, val, test, classes)


def _int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _need(ok: bool, key: str, value, allowed: str):
    if not ok:
        raise UserError(f"dataset.{key}: {value!r} is not allowed; expected {allowed}")


def check_dataset(cfg, min_side: int = 1, needed_by: str = ""):
    """Raise UserError naming the first `dataset.*` value that is of the wrong type or out of range.

    min_side: the smallest image height/width the rest of the run can use (e.g. a crop's padding + 1), known
    before reading only for generated data; readers check it again on the real images via check_image_size."""
    readers = ("cifar10", "image_folder", "synthetic")
    _need(cfg.name in readers, "name", cfg.name, " | ".join(readers))
    _need(isinstance(cfg.get("download", False), bool), "download", cfg.get("download"), "true or false")
    _need(cfg.subset is None or (_int(cfg.subset) and cfg.subset > 0), "subset", cfg.subset,
          "null or a positive integer")
    _need(_int(cfg.val_size) and cfg.val_size >= 0, "val_size", cfg.val_size, "an integer ≥ 0")
    _need(_int(cfg.split_seed) and 0 <= cfg.split_seed < 2**63, "split_seed", cfg.split_seed,
          "an integer in [0, 2^63)")
    if cfg.name != "synthetic":
        _need(cfg.root is None or (isinstance(cfg.root, str) and cfg.root.strip() != ""), "root", cfg.root,
              "a folder path")
    if cfg.name == "cifar10":
        _need(isinstance(cfg.url, str) and re.match(r"(https?|file)://", cfg.url) is not None, "url", cfg.url,
              "an http(s):// or file:// URL of cifar-10-python.tar.gz")
        _need(isinstance(cfg.md5, str) and re.fullmatch(r"[0-9a-fA-F]{32}", cfg.md5) is not None, "md5", cfg.md5,
              "the archive's MD5 as 32 hex digits")
    if cfg.name == "synthetic":
        _need(_int(cfg.num_classes) and 2 <= cfg.num_classes <= 10_000, "num_classes", cfg.num_classes,
              "an integer in [2, 10000]")
        _need(_int(cfg.num_train) and cfg.num_train >= 1, "num_train", cfg.num_train, "an integer ≥ 1")
        _need(_int(cfg.num_test) and cfg.num_test >= 0, "num_test", cfg.num_test,
              "an integer ≥ 0 (0 = no test split)")
        _need(_int(cfg.image_size) and 1 <= cfg.image_size <= 1024, "image_size", cfg.image_size,
              "an integer in [1, 1024]")
        _need(_int(cfg.channels) and cfg.channels in (1, 3), "channels", cfg.channels, "1 (grayscale) or 3 (RGB)")
        _need(isinstance(cfg.noise, (int, float)) and not isinstance(cfg.noise, bool) and math.isfinite(cfg.noise)
              and 0 <= cfg.noise <= 1000, "noise", cfg.noise, "a finite number in [0, 1000] (grey levels)")
        _need(_int(cfg.seed) and 0 <= cfg.seed < 2**63, "seed", cfg.seed, "an integer in [0, 2^63)")
        size = (cfg.num_train + cfg.num_test) * cfg.channels * cfg.image_size**2  # bytes, as uint8
        if size > 2**33:  # generated in float32 first: 4× that, briefly
            raise UserError(f"dataset: {cfg.num_train + cfg.num_test:,} synthetic images of {cfg.channels}×"
                            f"{cfg.image_size}×{cfg.image_size} would take {size / 2**30:.0f} GiB; lower "
                            f"dataset.num_train, dataset.num_test or dataset.image_size")
        check_image_size((cfg.channels, cfg.image_size, cfg.image_size), min_side, needed_by,
                         fix="raise dataset.image_size")


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


# ---------------------------------------------------------------- cifar10 (official python pickles)

class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles only plain containers and numpy arrays: a CIFAR-10 batch file cannot run code."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"), ("_codecs", "encode"),  # protocol-2 bytes
               ("__builtin__", "bytes"), ("builtins", "bytes")}  # protocol-2 empty bytes

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _read_pickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return _ArrayUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError, KeyError,
            IndexError, OverflowError, RecursionError) as e:
        reason = f"{type(e).__name__}: {e}"
    except MemoryError:  # a field that declares an absurd length (2^50 bytes) asks for that much memory
        reason = "it declares a field larger than this machine's memory"
    except OSError as e:
        reason = e.strerror or str(e)
    raise UserError(f"dataset.root: {path} is not a readable CIFAR-10 batch file ({reason}); "
                    f"delete {path.parent} and download again")


def _cifar_batch(path: Path) -> Split:
    batch = _read_pickle(path)
    try:
        data = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(batch[b"labels"], dtype=np.int64).reshape(-1)
    except (KeyError, ValueError, TypeError, OverflowError, MemoryError) as e:
        raise UserError(f"dataset.root: {path} is not a CIFAR-10 batch ({type(e).__name__} in its content); "
                        f"delete {path.parent} and download again") from None
    if len(data) == 0 or len(data) != len(labels):
        raise UserError(f"dataset.root: {path} has {len(data)} images and {len(labels)} labels; equal counts "
                        f"(at least one) expected; delete {path.parent} and download again")
    if labels.min() < 0 or labels.max() > 9:
        raise UserError(f"dataset.root: {path} has labels from {labels.min()} to {labels.max()}, CIFAR-10's are "
                        f"0..9; delete {path.parent} and download again")
    return Split(torch.from_numpy(data.copy()), torch.from_numpy(labels))


def read_cifar10(cfg):
    """The official CIFAR-10 python version: data_batch_1..5 (train), test_batch, batches.meta."""
    root = Path(cfg.root).expanduser()
    folder = root / CIFAR10_DIR
    if not folder.is_dir() and cfg.download:
        download_cifar10(root, cfg.url, cfg.md5)
    missing = [n for n in CIFAR10_FILES if not (folder / n).is_file()]
    if missing and folder.is_dir():
        raise UserError(f"dataset.root: {folder.resolve()} is incomplete (missing {', '.join(missing)}); delete it "
                        f"(dataset.download=true then fetches a fresh copy) or copy the missing files into it")
    if missing:
        raise UserError(f"dataset.root: no CIFAR-10 at {folder.resolve()} (missing {', '.join(missing)}); "
                        f"add dataset.download=true, point dataset.root at the folder holding {CIFAR10_DIR}/, "
                        f"or use dataset=image_folder dataset.root=PATH")
    parts = [_cifar_batch(folder / n) for n in CIFAR10_FILES[:5]]
    train = Split(torch.cat([p.images for p in parts]), torch.cat([p.labels for p in parts]))
    try:
        classes = [c.decode() for c in _read_pickle(folder / "batches.meta")[b"label_names"]]
    except (KeyError, TypeError, AttributeError, UnicodeDecodeError):
        classes = None
    if classes is None or len(classes) != 10:
        raise UserError(f"dataset.root: {folder / 'batches.meta'} holds no list of 10 label_names; "
                        f"delete {folder} and download again")
    return train, _cifar_batch(folder / "test_batch"), classes


def download_cifar10(root: Path, url: str, md5: str):
    """Fetch the archive (or take a verified copy already in root), check its MD5, extract atomically.

    Nothing partial is left on any failure: the download goes to a temp file that becomes root/<archive> only
    once its MD5 matches; the archive is extracted into a temp folder next to root/cifar-10-batches-py,
    which is then renamed into place in one step."""
    offline = (f"without internet, download {url} elsewhere and put it in {root.resolve()} (or extract it "
               f"there so that {(root / CIFAR10_DIR).resolve()} exists), or use dataset=image_folder")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"dataset.root: cannot create {root} ({e.strerror or e}); "
                        f"choose a writable folder") from None
    archive = root / (os.path.basename(urllib.parse.urlparse(url).path) or "cifar-10-python.tar.gz")
    if not (archive.is_file() and _md5(archive) == md5.lower()):
        _fetch(url, archive, md5.lower(), offline)
    _extract(archive, root)


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _fetch(url: str, archive: Path, md5: str, offline: str):
    """Download url to archive through a temp file, with a progress bar; the MD5 decides what is kept."""
    from tqdm import tqdm

    part = archive.with_name(f".{archive.name}.part{os.getpid()}")
    try:
        try:
            with urllib.request.urlopen(url, timeout=60) as response, open(part, "wb") as out:
                total = int(response.headers.get("Content-Length") or 0) or None
                h, received = hashlib.md5(), 0
                with tqdm(total=total, unit="B", unit_scale=True, desc=f"downloading {archive.name}",
                          disable=None, leave=False) as bar:
                    while chunk := response.read(1 << 20):
                        out.write(chunk)
                        h.update(chunk)
                        received += len(chunk)
                        bar.update(len(chunk))
        except (urllib.error.URLError, ConnectionError, TimeoutError, ssl.SSLError, http.client.HTTPException,
                ValueError) as e:  # the network: no route, refused, reset, timed out, bad URL, broken HTTP
            reason = getattr(e, "reason", None) or getattr(e, "strerror", None) or repr(e)
            if isinstance(e, http.client.IncompleteRead):
                reason = "the connection dropped mid-file"
            raise UserError(f"dataset.download: could not fetch {url} ({reason}); {offline}") from None
        except OSError as e:  # the disk: full, read-only, over quota
            raise UserError(f"dataset.download: cannot write {part} ({e.strerror or e}); free space there or "
                            f"set dataset.root to another folder; nothing was kept") from None
        if total is not None and received != total:
            raise UserError(f"dataset.download: the connection to {url} dropped after {received:,} of "
                            f"{total:,} bytes; nothing was kept, run again to retry, or {offline}")
        if h.hexdigest() != md5:
            raise UserError(f"dataset.download: the archive from {url} failed its MD5 check (got {h.hexdigest()}, "
                            f"expected {md5}); nothing was kept, run again to retry, or {offline}")
        os.replace(part, archive)
    finally:
        part.unlink(missing_ok=True)


def _extract(archive: Path, root: Path):
    """Extract archive's cifar-10-batches-py/ into a temp folder in root, check it, rename it into place."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{CIFAR10_DIR}.", dir=root))
    try:
        try:
            with tarfile.open(archive) as tar:
                tar.extractall(tmp, filter="data")  # "data": no absolute paths, links out, or device files
        except (tarfile.TarError, OSError, EOFError, ValueError) as e:
            raise UserError(f"dataset.download: cannot extract {archive} ({e}); nothing was extracted; if the disk "
                            f"is full free space, else delete the archive and run again") from None
        missing = [n for n in CIFAR10_FILES if not (tmp / CIFAR10_DIR / n).is_file()]
        if missing:
            raise UserError(f"dataset.download: {archive} holds no complete {CIFAR10_DIR}/ (missing "
                            f"{', '.join(missing)}); delete it and check dataset.url")
        try:
            os.rename(tmp / CIFAR10_DIR, root / CIFAR10_DIR)  # one step: a reader sees no folder or a whole one
        except OSError:
            if not (root / CIFAR10_DIR).is_dir():  # else a concurrent run finished first: use its copy
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------- image_folder

# The decode rule (README "Data"), one for every file, whatever sorts first:
# - grayscale modes (1, L, LA, I;16*, I) give one channel, every other mode (RGB, RGBA, P, CMYK, YCbCr, ...)
#   three; alpha is dropped, palettes are expanded;
# - 16-bit samples keep their high byte (v >> 8: 65535 → 255, 257·k → k), the same as PIL does for 16-bit colour
#   PNGs, so a 16-bit image is scaled into 0..255, never clipped;
# - a split is grayscale only if every image is; otherwise grayscale images are repeated to R = G = B.
# Bump DECODE_RULE whenever the pixels that some file decodes to change: every older cache stops matching.
DECODE_RULE = 2
GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N"}
_fallback_caches = {}


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
