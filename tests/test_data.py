"""Dataset readers on files the tests generate in each real format: CIFAR-10 pickles, PNG folders."""
import os
import pickle
import re
import struct
import zlib

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from deeprob_cli import UserError
from deeprob_cli.data import load_data
from deeprob_cli.datasets.cifar10 import read_cifar10
from deeprob_cli.datasets.image_folder import read_image_folder

from conftest import make_cfg


def write_cifar10(root, per_batch=6, seed=0):
    """A tiny CIFAR-10 in the official python format: data_batch_1..5, test_batch, batches.meta."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [int(x) for x in rng.integers(0, 10, per_batch)]
        batches[name] = (data, labels)
        with open(folder / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"labels": labels, b"data": data,
                         b"filenames": [b"x.png"] * per_batch}, f, protocol=2)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [n.encode() for n in names], b"num_vis": 3072}, f, protocol=2)
    return batches, names


def cifar_cfg(root, **kw):
    return OmegaConf.merge(make_cfg("dataset=cifar10").dataset,
                           {"root": str(root), "val_size": 0, "download": False, **kw})


def test_cifar10_reader_keeps_pixel_layout_labels_and_names(tmp_path):
    batches, names = write_cifar10(tmp_path)
    train, test, classes = read_cifar10(cifar_cfg(tmp_path))
    assert classes == names
    assert train.images.shape == (30, 3, 32, 32) and train.images.dtype == torch.uint8
    data, labels = batches["data_batch_2"]
    # row 0 of batch 2 is image 6: 1024 red values, then green, then blue, each row-major
    assert torch.equal(train.images[6], torch.from_numpy(data[0].reshape(3, 32, 32)))
    assert train.labels[6:12].tolist() == labels
    assert torch.equal(test.images, torch.from_numpy(batches["test_batch"][0].reshape(-1, 3, 32, 32)))


def test_validation_hold_out_is_fixed_and_disjoint(tmp_path):
    write_cifar10(tmp_path)
    a = load_data(cifar_cfg(tmp_path, val_size=10))
    b = load_data(cifar_cfg(tmp_path, val_size=10))
    assert len(a.train) == 20 and len(a.val) == 10 and torch.equal(a.val.images, b.val.images)
    full = read_cifar10(cifar_cfg(tmp_path))[0]
    rows = {bytes(x.numpy()) for x in full.images}
    assert {bytes(x.numpy()) for x in a.val.images}.isdisjoint({bytes(x.numpy()) for x in a.train.images})
    assert {bytes(x.numpy()) for x in a.val.images} | {bytes(x.numpy()) for x in a.train.images} == rows
    assert len(load_data(cifar_cfg(tmp_path, val_size=10, subset=7)).train) == 7


def test_cifar10_pickle_carrying_code_is_refused(tmp_path):
    write_cifar10(tmp_path)

    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    with open(tmp_path / "cifar-10-batches-py" / "data_batch_3", "wb") as f:
        pickle.dump({b"data": Evil(), b"labels": []}, f)
    with pytest.raises(UserError, match="data_batch_3 is not a readable CIFAR-10 batch file .*refusing to load builtins.print"):
        read_cifar10(cifar_cfg(tmp_path))


def test_truncated_cifar10_batch_is_a_clear_error(tmp_path):
    write_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(UserError, match="test_batch is not a readable CIFAR-10 batch file"):
        read_cifar10(cifar_cfg(tmp_path))


def write_folder(root, split, classes, per_class, size=(8, 6), mode="RGB", seed=0, suffix="png"):
    rng = np.random.default_rng(seed)
    arrays = {}
    for name in classes:
        (root / split / name).mkdir(parents=True)
        for i in range(per_class):
            shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
            array = rng.integers(0, 256, shape, dtype=np.uint8)
            Image.fromarray(array, mode).save(root / split / name / f"{i:03d}.{suffix}")
            arrays[(name, i)] = array
    return arrays


def folder_cfg(root, **kw):
    return OmegaConf.merge(make_cfg("dataset=image_folder", f"dataset.root={root}").dataset, {"val_size": 0, **kw})


@pytest.mark.parametrize("mode, channels", [("RGB", 3), ("L", 1)])
def test_image_folder_reads_pngs_exactly(tmp_path, mode, channels):
    arrays = write_folder(tmp_path, "train", ["b_cat", "a_dog"], 3, mode=mode)
    train, test, classes = read_image_folder(folder_cfg(tmp_path))
    assert classes == ["a_dog", "b_cat"] and test is None
    assert train.images.shape == (6, channels, 6, 8)
    assert train.labels.tolist() == [0, 0, 0, 1, 1, 1]
    expected = arrays[("b_cat", 2)]
    expected = expected.transpose(2, 0, 1) if mode == "RGB" else expected[None]
    assert torch.equal(train.images[5], torch.from_numpy(expected))


def test_image_folder_second_read_comes_from_the_cache(tmp_path, monkeypatch):
    write_folder(tmp_path, "train", ["a", "b"], 2)
    write_folder(tmp_path, "test", ["a", "b"], 1, seed=1)
    first = read_image_folder(folder_cfg(tmp_path))
    import deeprob_cli.datasets.image_folder as data

    monkeypatch.setattr(data, "_decode", lambda *a: pytest.fail("decoded again instead of using the cache"))
    second = read_image_folder(folder_cfg(tmp_path))
    assert torch.equal(first[0].images, second[0].images) and torch.equal(first[1].labels, second[1].labels)


def test_image_folder_errors_name_the_file(tmp_path):
    write_folder(tmp_path, "train", ["a", "b"], 2)
    Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(tmp_path / "train" / "b" / "odd.png")
    with pytest.raises(UserError, match=r"odd.png is 5×5 but 4 of the 5 images \(e.g. .*/a/000.png\) are 8×6"):
        read_image_folder(folder_cfg(tmp_path))
    (tmp_path / "train" / "b" / "odd.png").write_bytes(b"not a png")
    with pytest.raises(UserError, match=r"cannot read image .*odd.png"):
        read_image_folder(folder_cfg(tmp_path))
    (tmp_path / "train" / "b" / "odd.png").unlink()
    (tmp_path / "train" / "c").mkdir()
    with pytest.raises(UserError, match=r"class folder .*/train/c holds no"):
        read_image_folder(folder_cfg(tmp_path))


def test_test_split_with_other_classes_is_refused(tmp_path):
    write_folder(tmp_path, "train", ["a", "b"], 2)
    write_folder(tmp_path, "test", ["a", "z"], 1)
    with pytest.raises(UserError, match="differ from those of"):
        read_image_folder(folder_cfg(tmp_path))


def test_synthetic_is_deterministic_per_seed_and_sized_by_config():
    cfg = make_cfg("dataset=synthetic").dataset
    a, b = load_data(cfg), load_data(cfg)
    assert torch.equal(a.train.images, b.train.images) and a.shape == (3, 16, 16)
    assert len(a.train) + len(a.val) == cfg.num_train and len(a.classes) == cfg.num_classes
    other = load_data(OmegaConf.merge(cfg, {"seed": 1}))
    assert not torch.equal(a.train.images, other.train.images)


# ---------------------------------------------------------------- CIFAR-10 batch files a disk or a person can break

def _pickled(obj):
    return pickle.dumps(obj, protocol=2)


BAD_CIFAR = [  # (file, its bytes, what the one line must say)
    ("data_batch_1", b"\x80\x04\x8e" + (2**50).to_bytes(8, "little") + b"abc",  # BINBYTES8 of 2^50 bytes
     "data_batch_1 is not a readable CIFAR-10 batch file (it declares a field larger than this machine's memory)"),
    ("data_batch_2", b"\x80\x04garbage", "data_batch_2 is not a readable CIFAR-10 batch file"),
    ("data_batch_3", _pickled({b"data": np.zeros((0, 3072), np.uint8), b"labels": []}),
     "data_batch_3 has 0 images and 0 labels; equal counts (at least one) expected"),
    ("data_batch_4", _pickled({b"data": np.zeros((2, 3072), np.uint8), b"labels": [3, 10]}),
     "data_batch_4 has labels from 3 to 10, CIFAR-10's are 0..9"),
    ("data_batch_5", _pickled({b"data": np.zeros(100, np.uint8), b"labels": [1]}),
     "data_batch_5 is not a CIFAR-10 batch (ValueError in its content)"),
    ("test_batch", _pickled({b"labels": [1]}), "test_batch is not a CIFAR-10 batch (KeyError in its content)"),
    ("test_batch", _pickled([1, 2, 3]), "test_batch is not a CIFAR-10 batch (TypeError in its content)"),
    ("batches.meta", _pickled({b"num_vis": 3072}), "batches.meta holds no list of 10 label_names"),
]


@pytest.mark.parametrize("name, content, message", BAD_CIFAR, ids=[m[:40] for _, _, m in BAD_CIFAR])
def test_broken_cifar10_files_are_one_line_each(tmp_path, name, content, message):
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / name).write_bytes(content)
    with pytest.raises(UserError, match=re.escape(message)):
        read_cifar10(cifar_cfg(tmp_path))


# ---------------------------------------------------------------- image-folder cache: never stale

def _move_between_classes(root):
    """a/002 to b/002: every file keeps its name, size, mtime and place in the sorted list; only its class changes."""
    (root / "train" / "a" / "002.bmp").rename(root / "train" / "b" / "002.bmp")


def _rename_class_folder(root):
    (root / "train" / "b").rename(root / "train" / "c")


def _replace_same_size_keep_mtime(root):
    """Other pixels, the same byte count (BMP is uncompressed) and the old mtime, as `tar`/`rsync -t` leave it."""
    path = root / "train" / "a" / "001.bmp"
    before = path.stat()
    Image.fromarray(np.full((6, 8, 3), 7, np.uint8)).save(path)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)


def _swap_two_files(root):
    a, b, tmp = root / "train" / "a" / "000.bmp", root / "train" / "a" / "002.bmp", root / "x.bmp"
    a.rename(tmp), b.rename(a), tmp.rename(b)


CHANGES = [_move_between_classes, _rename_class_folder, _replace_same_size_keep_mtime, _swap_two_files]


@pytest.mark.parametrize("change", CHANGES, ids=[c.__name__.strip("_") for c in CHANGES])
def test_a_changed_folder_never_reads_a_stale_cache(tmp_path, monkeypatch, change):
    root = tmp_path / "data"
    write_folder(root, "train", ["a", "b"], 3, suffix="bmp")
    for i in range(3):  # b's files sort after all of a's, also when one of a's moves in
        (root / "train" / "b" / f"00{i}.bmp").rename(root / "train" / "b" / f"10{i}.bmp")
    before = read_image_folder(folder_cfg(root))  # fills the cache
    change(root)
    after = read_image_folder(folder_cfg(root))
    monkeypatch.setenv("DEEPROB_CACHE", str(tmp_path / "fresh-cache"))
    fresh = read_image_folder(folder_cfg(root))  # decoded from scratch: what `after` must equal
    assert after[2] == fresh[2] and torch.equal(after[0].labels, fresh[0].labels)
    assert torch.equal(after[0].images, fresh[0].images)
    # the change is visible at all, so serving `before` again would have failed the assertions above
    assert (before[2] != fresh[2] or not torch.equal(before[0].labels, fresh[0].labels)
            or not torch.equal(before[0].images, fresh[0].images))
    cached = sorted(p.name for p in (tmp_path / "cache").glob("image_folder-*.pt"))
    assert len(cached) == 1  # the folder's older cache was replaced, not left to pile up


def test_torn_and_legacy_cache_files_are_removed_and_a_live_writers_kept(tmp_path):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    write_folder(tmp_path, "train", ["a", "b"], 1)
    read_image_folder(folder_cfg(tmp_path))
    (cache,) = (tmp_path / "cache").glob("image_folder-*.pt")
    place = cache.name.split("-")[1]
    torn = tmp_path / "cache" / f".image_folder-{place}-0123.pt.tmp{dead.stdout.strip()}"
    writing = tmp_path / "cache" / f".image_folder-{place}-4567.pt.tmp{os.getppid()}"  # a live writer's file
    torn.write_bytes(b"half a cache"), writing.write_bytes(b"being written")
    legacy = tmp_path / "cache" / "image_folder-0123456789abcdef0123.pt"  # the old name- and mtime-keyed format
    legacy.write_bytes(b"old")
    Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(tmp_path / "train" / "a" / "new.png")
    read_image_folder(folder_cfg(tmp_path))  # a changed folder: decoded and saved again
    assert not torn.exists() and writing.exists() and not legacy.exists()


def test_a_copied_folder_reuses_the_cache_and_a_new_decode_rule_does_not(tmp_path, monkeypatch):
    import shutil

    import deeprob_cli.datasets.image_folder as data

    write_folder(tmp_path / "one", "train", ["a", "b"], 2)
    first = read_image_folder(folder_cfg(tmp_path / "one"))
    shutil.copytree(tmp_path / "one", tmp_path / "two")  # new mtimes, same content: same key
    with monkeypatch.context() as m:
        m.setattr(data, "_decode", lambda *a: pytest.fail("decoded again instead of using the cache"))
        assert torch.equal(read_image_folder(folder_cfg(tmp_path / "two"))[0].images, first[0].images)
    decoded = []
    monkeypatch.setattr(data, "DECODE_RULE", data.DECODE_RULE + 1)
    original = data._decode
    monkeypatch.setattr(data, "_decode", lambda *a: decoded.append(a[0]) or original(*a))
    read_image_folder(folder_cfg(tmp_path / "one"))
    assert len(decoded) == 4


# ---------------------------------------------------------------- one decode rule

def write_png16(path, array):
    """A 16-bit PNG (grayscale for (H, W), RGB for (H, W, 3)) written by hand: PIL cannot write 16-bit colour."""
    height, width = array.shape[:2]
    raw = b"".join(b"\x00" + array[y].astype(">u2").tobytes() for y in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 16, 0 if array.ndim == 2 else 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
                     + chunk(b"IEND", b""))


@pytest.mark.parametrize("shape", [(6, 8), (6, 8, 3)], ids=["gray16", "rgb16"])
def test_16_bit_pngs_are_scaled_to_8_bit_not_clipped(tmp_path, shape):
    rng = np.random.default_rng(0)
    arrays = {}
    for name in ["a", "b"]:
        (tmp_path / "train" / name).mkdir(parents=True)
        arrays[name] = rng.integers(0, 65536, shape, dtype=np.uint16)
        arrays[name][0, 0] = 65535  # white stays white
        arrays[name][0, 1] = 257 * 100  # an 8-bit value expanded to 16 bits comes back exactly
        write_png16(tmp_path / "train" / name / "0.png", arrays[name])
    train, _, _ = read_image_folder(folder_cfg(tmp_path))
    expected = arrays["b"] >> 8
    expected = expected[None] if expected.ndim == 2 else expected.transpose(2, 0, 1)
    assert torch.equal(train.images[1], torch.from_numpy(expected.astype(np.uint8)))
    assert train.images[1].flatten()[:2].tolist() == [255, 100]
    assert train.images.float().std() > 60  # spread over 0..255, not piled up at 255


@pytest.mark.parametrize("gray_class", ["a", "b"], ids=["gray_sorts_first", "rgb_sorts_first"])
def test_a_folder_mixing_gray_and_rgb_becomes_rgb_whatever_sorts_first(tmp_path, gray_class):
    rgb_class = "b" if gray_class == "a" else "a"
    gray = write_folder(tmp_path, "train", [gray_class], 2, mode="L")
    rgb = write_folder(tmp_path, "train", [rgb_class], 2, mode="RGB", seed=1)
    train, _, classes = read_image_folder(folder_cfg(tmp_path))
    assert train.images.shape == (4, 3, 6, 8)
    g, r = classes.index(gray_class) * 2, classes.index(rgb_class) * 2
    for c in range(3):  # gray replicated as R = G = B
        assert torch.equal(train.images[g + 1, c], torch.from_numpy(gray[(gray_class, 1)]))
    assert torch.equal(train.images[r], torch.from_numpy(rgb[(rgb_class, 0)].transpose(2, 0, 1)))


def test_a_gray_test_split_beside_an_rgb_train_split_becomes_rgb(tmp_path):
    write_folder(tmp_path, "train", ["a", "b"], 1)
    gray = write_folder(tmp_path, "test", ["a", "b"], 1, mode="L")
    train, test, _ = read_image_folder(folder_cfg(tmp_path))
    assert test.images.shape == (2, 3, 6, 8) and train.images.shape == (2, 3, 6, 8)
    assert torch.equal(test.images[1], torch.from_numpy(gray[("b", 0)]).expand(3, -1, -1))


@pytest.mark.parametrize("mode, pixel, expected", [("1", 1, [255]), ("LA", (90, 3), [90]),
                                                  ("RGBA", (10, 20, 30, 0), [10, 20, 30]),
                                                  ("CMYK", (0, 0, 0, 0), [255, 255, 255])])
def test_other_modes_follow_the_documented_rule(tmp_path, mode, pixel, expected):
    for name in ["a", "b"]:
        (tmp_path / "train" / name).mkdir(parents=True)
        Image.new(mode, (8, 6), pixel).save(tmp_path / "train" / name / ("0.jpg" if mode == "CMYK" else "0.png"))
    train, _, _ = read_image_folder(folder_cfg(tmp_path))
    assert train.images.shape == (2, len(expected), 6, 8)
    assert train.images[:, :, 0, 0].tolist() == [expected, expected]


def test_a_non_utf8_image_name_is_read(tmp_path):
    write_folder(tmp_path, "train", ["a", "b"], 2)
    odd = os.path.join(os.fsencode(tmp_path / "train" / "a"), b"caf\xe9.png")  # Latin-1 name from an old archive
    Image.fromarray(np.full((6, 8, 3), 9, np.uint8)).save(os.fsdecode(odd))
    train, _, _ = read_image_folder(folder_cfg(tmp_path))
    assert len(train) == 5 and (train.images[:3] == 9).all(dim=(1, 2, 3)).sum() == 1


# ---------------------------------------------------------------- bad files: one line each

def _dangling_link(train):
    os.symlink(train / "nowhere.txt", train / "a" / "notes.txt")  # not an image: ignored, as before
    os.symlink(train / "nowhere.png", train / "a" / "link.png")
    return "a/link.png is a dangling or looping symbolic link; remove it"


def _looping_link(train):
    os.symlink("loop.png", train / "a" / "loop.png")
    return "a/loop.png is a dangling or looping symbolic link"


def _dangling_class_link(train):
    os.symlink(train.parent / "gone", train / "z")
    return "train/z is a dangling or looping symbolic link"


def _non_utf8_class(train):
    folder = os.path.join(os.fsencode(train), b"caf\xe9")
    os.mkdir(folder)
    Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(os.fsdecode(os.path.join(folder, b"0.png")))
    return "class folder name " + str(train) + "/caf\\xe9 is not valid UTF-8; rename it"


def _png_header(path, width, height):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 1000)))


def _decompression_bomb(train):
    _png_header(train / "a" / "bomb.png", 100_000, 100_000)  # 10^10 pixels declared in 70 bytes: PIL refuses
    return "a/bomb.png declares 10,000,000,000 pixels, over the 89,478,485 that are safe to decode"


def _large_declared_size(train):
    _png_header(train / "a" / "big.png", 10_000, 10_000)  # PIL only warns below twice its limit; we refuse
    return "a/big.png declares 10000×10000 pixels, over the 89,478,485 that are safe to decode"


def _not_an_image(train):
    (train / "b" / "notes.png").write_bytes(b"not a png")
    return "cannot read image " + str(train) + "/b/notes.png (not a PNG, JPEG or BMP file); remove or replace it"


def _truncated_png(train):
    path = train / "b" / "001.png"
    path.write_bytes(path.read_bytes()[:70])
    return "cannot read image " + str(train) + "/b/001.png"


def _one_class(train):
    import shutil

    shutil.rmtree(train / "b")
    return "holds 1 class folder(s); at least 2 are needed"


def _other_size(train):
    Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(train / "b" / "odd.png")
    return "odd.png is 5×5 but 4 of the 5 images"


BAD_FILES = [_dangling_link, _looping_link, _dangling_class_link, _non_utf8_class, _decompression_bomb,
             _large_declared_size, _not_an_image, _truncated_png, _one_class, _other_size]


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # PIL's warning, then our one line
@pytest.mark.parametrize("damage", BAD_FILES, ids=[d.__name__.strip("_") for d in BAD_FILES])
def test_a_bad_file_in_an_image_folder_is_one_line(tmp_path, damage):
    write_folder(tmp_path, "train", ["a", "b"], 2)
    message = damage(tmp_path / "train")
    with pytest.raises(UserError, match=re.escape(message)) as caught:
        read_image_folder(folder_cfg(tmp_path))
    str(caught.value).encode("utf-8")  # printable on any terminal: no lone surrogates from odd names
    assert "\n" not in str(caught.value)


# ---------------------------------------------------------------- DEEPROB_CACHE that cannot be used

@pytest.mark.parametrize("where", ["a_file", "under_a_file", "/proc/deeprob-cache"])
def test_an_unusable_cache_folder_is_a_warning_not_a_failure(tmp_path, monkeypatch, caplog, where):
    (tmp_path / "a_file").write_text("x")
    cache = where if where.startswith("/") else str(tmp_path / "a_file" / ("sub" if where == "under_a_file" else ""))
    monkeypatch.setenv("DEEPROB_CACHE", cache.rstrip("/"))
    arrays = write_folder(tmp_path, "train", ["a", "b"], 1)
    train, _, _ = read_image_folder(folder_cfg(tmp_path))
    assert torch.equal(train.images[1], torch.from_numpy(arrays[("b", 0)].transpose(2, 0, 1)))
    assert f"DEEPROB_CACHE: cannot use {cache.rstrip('/')} as a cache folder" in caplog.text
    assert "set DEEPROB_CACHE to a writable folder" in caplog.text
    assert (tmp_path / "a_file").read_text() == "x"


def test_no_writable_folder_at_all_is_one_line(tmp_path, monkeypatch):
    import errno
    import tempfile

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    (tmp_path / "a_file").write_text("x")
    monkeypatch.setenv("DEEPROB_CACHE", str(tmp_path / "a_file"))
    monkeypatch.setattr(tempfile, "mkdtemp", no_space)
    write_folder(tmp_path, "train", ["a", "b"], 1)
    with pytest.raises(UserError, match=re.escape(f"DEEPROB_CACHE: cannot use {tmp_path / 'a_file'} (it is a file) "
                                                  f"nor a temporary folder (No space left on device)")):
        read_image_folder(folder_cfg(tmp_path))


def test_a_full_disk_while_writing_the_cache_is_a_warning(tmp_path, monkeypatch, caplog):
    import errno
    from pathlib import Path

    def full(self, data):
        self.open("wb").write(data[:10])  # a partial temp file, as a full disk leaves it
        raise OSError(errno.ENOSPC, "No space left on device")

    write_folder(tmp_path, "train", ["a", "b"], 1)
    monkeypatch.setattr(Path, "write_bytes", full)
    train, _, _ = read_image_folder(folder_cfg(tmp_path))
    assert len(train) == 2 and "could not write" in caplog.text and "No space left on device" in caplog.text
    assert list((tmp_path / "cache").iterdir()) == []  # no temp file left behind


# ---------------------------------------------------------------- dataset values

BAD_VALUES = [  # (dataset, override, what the one line must say)
    ("synthetic", {"noise": float("nan")}, "dataset.noise: nan is not allowed; expected a finite number in [0, 1000]"),
    ("synthetic", {"noise": float("inf")}, "dataset.noise: inf is not allowed"),
    ("synthetic", {"noise": -1.0}, "dataset.noise: -1.0 is not allowed"),
    ("synthetic", {"num_classes": 1}, "dataset.num_classes: 1 is not allowed; expected an integer in [2, 10000]"),
    ("synthetic", {"num_train": 10**9}, "dataset: 1,000,000,128 synthetic images of 3×16×16 would take 715 GiB"),
    ("synthetic", {"channels": 2}, "dataset.channels: 2 is not allowed; expected 1 (grayscale) or 3 (RGB)"),
    ("synthetic", {"image_size": 0}, "dataset.image_size: 0 is not allowed"),
    ("synthetic", {"num_train": 0}, "dataset.num_train: 0 is not allowed"),
    ("synthetic", {"num_test": -1}, "dataset.num_test: -1 is not allowed"),
    ("synthetic", {"seed": -1}, "dataset.seed: -1 is not allowed"),
    ("synthetic", {"split_seed": 2**63}, "dataset.split_seed: 9223372036854775808 is not allowed"),
    ("synthetic", {"val_size": -1}, "dataset.val_size: -1 is not allowed"),
    ("synthetic", {"subset": 0}, "dataset.subset: 0 is not allowed"),
    ("cifar10", {"download": "yes"}, "dataset.download: 'yes' is not allowed; expected true or false"),
    ("cifar10", {"url": "ftp://example.org/c.tgz"}, "dataset.url: 'ftp://example.org/c.tgz' is not allowed"),
    ("cifar10", {"md5": "abc"}, "dataset.md5: 'abc' is not allowed; expected the archive's MD5 as 32 hex digits"),
    ("image_folder", {"root": ""}, "dataset.root: '' is not allowed; expected a folder path"),
]


@pytest.mark.parametrize("name, override, message", BAD_VALUES,
                         ids=[m.split(":")[0] + str(o) for _, o, m in BAD_VALUES])
def test_bad_dataset_values_are_refused_before_reading(tmp_path, name, override, message):
    cfg = OmegaConf.merge(make_cfg(f"dataset={name}").dataset, {"root": str(tmp_path / "none")}, override)
    with pytest.raises(UserError, match=re.escape(message)):
        load_data(cfg)


def test_images_smaller_than_the_run_needs_are_refused(tmp_path):
    cfg = OmegaConf.merge(make_cfg("dataset=synthetic").dataset, {"image_size": 4})
    with pytest.raises(UserError, match=re.escape("dataset: images are 4×4 pixels but at least 9×9 are needed by "
                                                  "augment.crop (padding 4); raise dataset.image_size")):
        load_data(cfg, min_side=9, needed_by="augment.crop (padding 4)")
    assert load_data(cfg, min_side=4).shape == (3, 4, 4)
    write_folder(tmp_path, "train", ["a", "b"], 2)  # 8×6 images
    with pytest.raises(UserError, match=re.escape("dataset: images are 8×6 pixels but at least 7×7 are needed")):
        load_data(folder_cfg(tmp_path), min_side=7)


def test_dataset_noise_nan_on_the_command_line_is_one_line_exit_2(tmp_path):
    from conftest import run_cli

    result = run_cli("train", "dataset=synthetic", "dataset.noise=nan", cwd=tmp_path, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "dataset.noise: nan is not allowed" in result.stderr.strip().splitlines()[-1]
