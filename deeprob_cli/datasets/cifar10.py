"""`dataset=cifar10`: the official CIFAR-10 python pickles (data_batch_1..5, test_batch, batches.meta), downloaded
when missing (MD5 checked, extracted atomically) and unpickled without running code.

    deeprob train dataset=cifar10 dataset.root=data                  # fetches cifar-10-python.tar.gz when missing
    deeprob train dataset=cifar10 dataset.url=file:///mirror/cifar-10-python.tar.gz
"""
import hashlib
import http.client
import os
import pickle
import shutil
import ssl
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Annotated

import numpy as np
import torch

from .. import UserError
from ..data import Dataset, Root, SplitSeed, Split, Subset, ValSize
from ..validate import Match

CIFAR10_DIR = "cifar-10-batches-py"
CIFAR10_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"  # the official archive (conf/dataset/cifar10.yaml)
MD5 = "c58f30108f718f92721af3b95e74349a"


class CIFAR10(Dataset):
    """conf/dataset/cifar10.yaml: its parameters, declared once."""

    def __init__(self, root: Root = "data", download: bool = True,
                 url: Annotated[str, Match(r"(https?|file)://",
                                           "an http(s):// or file:// URL of cifar-10-python.tar.gz")] = URL,
                 md5: Annotated[str, Match(r"[0-9a-fA-F]{32}\Z", "the archive's MD5 as 32 hex digits")] = MD5,
                 subset: Subset = None, val_size: ValSize = 5000, split_seed: SplitSeed = 0):
        super().__init__(subset, val_size, split_seed)
        self.root, self.download, self.url, self.md5 = root, download, url, md5

    def read(self):
        return read_cifar10(self)


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
