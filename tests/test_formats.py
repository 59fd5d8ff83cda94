"""Image folders of JPEG and BMP files, and the train/val hold-out that dataset.split_seed draws.

    deeprob train dataset=image_folder dataset.root=PATH dataset.split_seed=1    # PATH/train/<class>/*.jpg|bmp
"""
import hashlib

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import make_cfg, run_cli, run_dirs, summary
from deeprob_cli.data import load_data
from deeprob_cli.datasets.synthetic import make_synthetic

SIZE = 10  # pixels per side of the test images


def _image(rng, level: int, mode: str = "RGB") -> np.ndarray:
    """A smooth image around grey level `level` (smooth, so that JPEG keeps it within a few levels)."""
    channels = 3 if mode == "RGB" else 1
    ramp = np.linspace(-20, 20, SIZE)
    base = level + ramp[None, :, None] + ramp[:, None, None] / 2 + rng.integers(-3, 4, (1, 1, channels))
    array = np.clip(base, 0, 255).astype(np.uint8)
    return array if mode == "RGB" else array[..., 0]


def _write(folder, name, array, **save):
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(folder / name, **save)
    return folder / name


def _as_chw(array):
    return torch.from_numpy(np.array(array[None] if array.ndim == 2 else array.transpose(2, 0, 1)))


def _folder_cfg(root, *overrides):
    return make_cfg("dataset=image_folder", f"dataset.root={root}", *overrides).dataset


def test_jpeg_and_bmp_files_load_as_pil_decodes_them(tmp_path):
    """BMP is lossless: the pixels written come back; JPEG is lossy: the pixels PIL decodes from the file come back,
    within a few grey levels of those written. Suffixes in any case (.jpg, .JPEG, .jpeg) count."""
    rng = np.random.default_rng(0)
    written = {("bmp", f"{i}.bmp"): _image(rng, 60 + 10 * i) for i in range(3)}
    written |= {("jpeg", name): _image(rng, 150 + 10 * i) for i, name in enumerate(["0.jpg", "1.JPEG", "2.jpeg"])}
    files = [_write(tmp_path / "train" / cls, name, array, **({"quality": 95} if cls == "jpeg" else {}))
             for (cls, name), array in written.items()]
    data = load_data(_folder_cfg(tmp_path, "dataset.val_size=0"))
    assert data.classes == ["bmp", "jpeg"] and data.test is None
    assert data.train.images.shape == (6, 3, SIZE, SIZE) and data.train.labels.tolist() == [0, 0, 0, 1, 1, 1]
    for i, ((cls, _), array) in enumerate(written.items()):  # files in name order within their class
        got = data.train.images[i]
        if cls == "bmp":
            assert torch.equal(got, _as_chw(array))
        else:
            assert torch.equal(got, _as_chw(np.asarray(Image.open(files[i]).convert("RGB"))))
            assert (got.int() - _as_chw(array).int()).abs().float().mean() < 3  # lossy, but close


def test_grayscale_jpeg_and_bmp_give_one_channel(tmp_path):
    rng = np.random.default_rng(1)
    bmp = _image(rng, 40, "L")
    _write(tmp_path / "train" / "a", "x.bmp", bmp)
    jpg = _write(tmp_path / "train" / "b", "y.jpg", _image(rng, 200, "L"), quality=95)
    data = load_data(_folder_cfg(tmp_path, "dataset.val_size=0"))
    assert data.train.images.shape == (2, 1, SIZE, SIZE)
    assert torch.equal(data.train.images[0], _as_chw(bmp))
    assert torch.equal(data.train.images[1], _as_chw(np.asarray(Image.open(jpg))))


@pytest.mark.slow
def test_training_on_jpeg_and_bmp_folders_learns_and_scores_their_test_split(tmp_path):
    """End to end: dark BMP class vs bright JPEG class, train/ and test/ folders; both splits scored perfectly."""
    rng = np.random.default_rng(2)
    for split, n in (("train", 24), ("test", 6)):
        for i in range(n):
            _write(tmp_path / "data" / split / "dark", f"{i}.bmp", _image(rng, 50))
            _write(tmp_path / "data" / split / "bright", f"{i}.jpg", _image(rng, 200), quality=90)
    run_cli("train", "dataset=image_folder", f"dataset.root={tmp_path / 'data'}", "dataset.val_size=8", "model=mlp",
            "model.width=16", "trainer.epochs=3", "trainer.batch_size=8", "augment=none", "log.hist_every=0",
            cwd=tmp_path)
    (run,) = run_dirs(tmp_path / "runs")
    s = summary(run)
    assert s["status"] == "completed" and s["steps"] == 3 * (48 - 8) // 8
    assert s["val_acc"] == 1.0 and s["test_acc"] == 1.0  # 150 grey levels apart


# ---------------------------------------------------------------- dataset.split_seed

def _ids(images: torch.Tensor, index_of: dict) -> list:
    """Each image's position in the split before the hold-out (synthetic images are unique noise)."""
    return [index_of[hashlib.sha1(im.numpy().tobytes()).hexdigest()] for im in images]


@pytest.fixture(scope="module")
def synthetic():
    cfg = make_cfg("dataset=synthetic", "dataset.num_train=300", "dataset.val_size=60").dataset
    full, _, _ = make_synthetic(cfg)
    index_of = {hashlib.sha1(im.numpy().tobytes()).hexdigest(): i for i, im in enumerate(full.images)}
    assert len(index_of) == len(full)  # every image unique: ids are well defined
    return index_of


def _split(index_of, seed):
    data = load_data(make_cfg("dataset=synthetic", "dataset.num_train=300", "dataset.val_size=60",
                              f"dataset.split_seed={seed}").dataset)
    return _ids(data.train.images, index_of), _ids(data.val.images, index_of), data


def test_split_seed_fixes_the_hold_out_and_another_seed_draws_another(synthetic):
    train0, val0, data0 = _split(synthetic, 0)
    again_train, again_val, again = _split(synthetic, 0)
    train1, val1, _ = _split(synthetic, 1)
    assert (again_train, again_val) == (train0, val0)
    assert torch.equal(again.val.labels, data0.val.labels)
    for train, val in ((train0, val0), (train1, val1)):
        assert len(val) == 60 and not set(train) & set(val) and sorted(train + val) == list(range(300))
    assert set(val0) != set(val1)
    assert len(set(val0) & set(val1)) < 30  # two random 60-of-300 draws share about 12
    # the held-out images keep their labels
    labels = make_synthetic(make_cfg("dataset=synthetic", "dataset.num_train=300").dataset)[0].labels
    assert data0.val.labels.tolist() == labels[val0].tolist()
