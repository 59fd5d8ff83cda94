"""User mistakes through the real CLI in a subprocess: one clear line, exit code 2, no traceback, nothing of an
earlier run touched. The full table of bad inputs runs in-process in tests/test_bad_inputs.py."""

import pytest

from conftest import FAST, run_cli, tree_digest
from conftest import summary as summary_of


@pytest.mark.parametrize("override, expected", [  # the full table runs in-process: tests/test_bad_inputs.py
    ("trainer.epochs=0", "trainer.epochs: 0 is not allowed; expected a positive integer"),
    ("activation=relux", "activation=relux: no such option; choose from elu, gelu, leaky_relu"),
    ("dataset.subset=100000", "dataset.subset: 100000 is larger than the 768 training images"),
])
def test_bad_value_is_one_line_exit_2(tmp_path, override, expected):
    result = run_cli("train", *FAST, override, cwd=tmp_path, check=False)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("deeprob train: error: ") and expected in lines[-1]
    assert "Traceback" not in result.stderr


def test_missing_cifar10_says_where_it_looked_and_how_to_fix(tmp_path):
    result = run_cli("train", "dataset=cifar10", "dataset.download=false", f"dataset.root={tmp_path / 'nowhere'}",
                     cwd=tmp_path, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert str(tmp_path / "nowhere" / "cifar-10-batches-py") in line
    assert "dataset.download=true" in line and "dataset=image_folder" in line


def test_an_existing_run_is_never_overwritten(tmp_path):
    run_cli("train", *FAST, "hydra.run.dir=run", cwd=tmp_path)
    before = tree_digest(tmp_path / "run")
    result = run_cli("train", *FAST, "trainer.epochs=2", "hydra.run.dir=run", cwd=tmp_path, check=False)
    assert result.returncode == 2 and "already holds a run" in result.stderr
    assert tree_digest(tmp_path / "run") == before


def test_an_unexpected_error_is_one_line_with_the_traceback_in_train_log(tmp_path, monkeypatch):
    import deeprob_cli.train as train_module

    def broken(*args, **kwargs):
        raise RuntimeError("a bug, deliberately")

    monkeypatch.setattr(train_module, "build_job", broken)
    result = run_cli("train", *FAST, "hydra.run.dir=run", cwd=tmp_path, check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"deeprob train: failed: RuntimeError: a bug, deliberately (the traceback is in {tmp_path / 'run' / 'train.log'}; "
        f"HYDRA_FULL_ERROR=1 prints it here)")
    assert "Traceback" in (tmp_path / "run" / "train.log").read_text()
    s = summary_of(tmp_path / "run")
    assert s["status"] == "failed" and s["error"] == "RuntimeError: a bug, deliberately"
    with pytest.raises(RuntimeError, match="a bug, deliberately"):  # HYDRA_FULL_ERROR=1: the exception itself
        run_cli("train", *FAST, "hydra.run.dir=run2", cwd=tmp_path, check=False, env={"HYDRA_FULL_ERROR": "1"})


def test_every_guarantee_in_the_readme_names_a_test_that_exists():
    """README "When things go wrong": each guarantee names its tests in brackets; each named test must exist."""
    import re

    from conftest import REPO

    text = (REPO / "README.md").read_text()
    section = text.split("## When things go wrong", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"\b(test_[a-z0-9_]+)", section))
    defined = {name for path in (REPO / "tests").glob("test_*.py")
               for name in re.findall(r"^def (test_[a-z0-9_]+)", path.read_text(), flags=re.M)}
    defined |= {path.stem for path in (REPO / "tests").glob("test_*.py")}  # a whole file named
    assert len(named) >= 20 and sorted(named - defined) == []
