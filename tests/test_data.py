"""Dataset readers on files the tests generate in each real format: CIFAR-10 pickles, PNG folders."""
import pickle
import tarfile

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from deeprob_cli import UserError
from deeprob_cli.data import load_data, read_cifar10, read_image_folder

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
    return OmegaConf.merge(make_cfg("dataset=cifar10").dataset, {"root": str(root), "val_size": 0, **kw})


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


@pytest.fixture
def mirror(tmp_path):
    """A CIFAR-10 archive served over HTTP on loopback: (its URL, its MD5)."""
    import functools
    import hashlib
    import http.server
    import threading

    source = tmp_path / "mirror" / "cifar-10-python.tar.gz"
    source.parent.mkdir()
    write_cifar10(tmp_path / "src")
    with tarfile.open(source, "w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(source.parent))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/{source.name}", hashlib.md5(source.read_bytes()).hexdigest()
    server.shutdown()


def test_download_with_wrong_md5_fails_and_leaves_no_archive(tmp_path, mirror):
    root = tmp_path / "root"
    cfg = cifar_cfg(root, download=True, url=mirror[0], md5="0" * 32)
    with pytest.raises(UserError, match="failed its MD5 check"):
        read_cifar10(cfg)
    assert not (root / "cifar-10-python.tar.gz").exists() and not (root / "cifar-10-batches-py").exists()


def test_download_with_right_md5_extracts_and_reads(tmp_path, mirror):
    train, test, _ = read_cifar10(cifar_cfg(tmp_path / "root", download=True, url=mirror[0], md5=mirror[1]))
    assert len(train) == 30 and len(test) == 6


def write_folder(root, split, classes, per_class, size=(8, 6), mode="RGB", seed=0):
    rng = np.random.default_rng(seed)
    arrays = {}
    for name in classes:
        (root / split / name).mkdir(parents=True)
        for i in range(per_class):
            shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
            array = rng.integers(0, 256, shape, dtype=np.uint8)
            Image.fromarray(array, mode).save(root / split / name / f"{i:03d}.png")
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
    import deeprob_cli.data as data

    monkeypatch.setattr(data, "_decode", lambda *a: pytest.fail("decoded again instead of using the cache"))
    second = read_image_folder(folder_cfg(tmp_path))
    assert torch.equal(first[0].images, second[0].images) and torch.equal(first[1].labels, second[1].labels)


def test_image_folder_errors_name_the_file(tmp_path):
    write_folder(tmp_path, "train", ["a", "b"], 2)
    Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(tmp_path / "train" / "b" / "odd.png")
    with pytest.raises(UserError, match=r"odd.png is 5×5 but .* is 8×6"):
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
