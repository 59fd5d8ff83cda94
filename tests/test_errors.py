"""User mistakes: one clear line, a non-zero exit, no traceback, nothing of an earlier run touched."""
import hashlib

import pytest

from conftest import FAST, run_cli


def _tree_digest(folder):
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(folder)).encode() + path.read_bytes())
    return h.hexdigest()


@pytest.mark.parametrize("override, expected", [
    ("trainer.epochs=0", "trainer.epochs: 0 is not allowed; expected a positive integer"),
    ("trainer.batch_size=-5", "trainer.batch_size: -5 is not allowed; expected a positive integer"),
    ("trainer.epochs=abc", "trainer.epochs: 'abc' is not allowed; expected a positive integer"),
    ("trainer.device=tpu", "trainer.device: 'tpu' is not allowed; expected auto, cpu or cuda"),
    ("optim.lr=-1", "optim.lr: -1 is not allowed; expected a number > 0"),
    ("dataset.subset=100000", "dataset.subset: 100000 is larger than the 768 training images"),
    ("dataset.val_size=5000", "dataset.val_size: 5000 leaves no training images out of 1024"),
    ("log.hist_every=-1", "log.hist_every: -1 is not allowed"),
])
def test_bad_value_is_one_line_exit_2(tmp_path, override, expected):
    result = run_cli("train", *FAST, override, cwd=tmp_path, check=False)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("deeprob train: error: ") and expected in lines[-1]
    assert "Traceback" not in result.stderr


def test_unknown_option_lists_the_valid_ones(tmp_path):
    result = run_cli("train", *FAST, "activation=relux", cwd=tmp_path, check=False)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "Could not find 'activation/relux'" in result.stderr
    assert "relu" in result.stderr and "tanh" in result.stderr and "gelu" in result.stderr


def test_misspelled_parameter_names_the_key(tmp_path):
    result = run_cli("train", *FAST, "activation=gelu", "activation.aproximate=tanh", cwd=tmp_path, check=False)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "activation.aproximate" in result.stderr


def test_missing_cifar10_says_where_it_looked_and_how_to_fix(tmp_path):
    result = run_cli("train", "dataset=cifar10", f"dataset.root={tmp_path / 'nowhere'}", cwd=tmp_path, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert str(tmp_path / "nowhere" / "cifar-10-batches-py") in line
    assert "dataset.download=true" in line and "dataset=image_folder" in line


def test_image_folder_without_root_or_train_dir(tmp_path):
    result = run_cli("train", "dataset=image_folder", cwd=tmp_path, check=False)
    assert result.returncode == 2 and "dataset.root: not set" in result.stderr
    result = run_cli("train", "dataset=image_folder", f"dataset.root={tmp_path}", cwd=tmp_path, check=False)
    assert result.returncode == 2 and "has no train/ folder" in result.stderr


def test_an_existing_run_is_never_overwritten(tmp_path):
    run_cli("train", *FAST, "hydra.run.dir=run", cwd=tmp_path)
    before = _tree_digest(tmp_path / "run")
    result = run_cli("train", *FAST, "trainer.epochs=2", "hydra.run.dir=run", cwd=tmp_path, check=False)
    assert result.returncode == 2 and "already holds a run" in result.stderr
    assert _tree_digest(tmp_path / "run") == before
