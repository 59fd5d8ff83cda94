"""`deeprob eval` reproduces what training measured, from the checkpoint alone."""
import json

import numpy as np
from PIL import Image

from conftest import FAST, run_cli, run_dirs, summary


def test_eval_reproduces_the_final_val_and_test_accuracy(tmp_path):
    run_cli("train", *FAST, "trainer.epochs=2", cwd=tmp_path)
    (run,) = run_dirs(tmp_path / "runs")
    out = run_cli("eval", run, cwd=tmp_path).stdout
    result = json.loads((run / "eval.json").read_text())
    assert result["split"] == "val" and result["n"] == 256
    assert result["accuracy"] == summary(run)["val_acc"] and result["loss"] == summary(run)["val_loss"]
    assert f"{summary(run)['val_acc']:.4f}" in out
    run_cli("eval", run, "split=test", cwd=tmp_path)
    assert json.loads((run / "eval.json").read_text())["accuracy"] == summary(run)["test_acc"]


def test_eval_on_another_root_with_the_same_classes(tmp_path):
    rng = np.random.default_rng(0)
    for root, n in (("a", 12), ("b", 5)):
        for label, name in enumerate(["x", "y"]):
            folder = tmp_path / root / "train" / name
            folder.mkdir(parents=True)
            for i in range(n):
                Image.fromarray((rng.integers(0, 60, (8, 8, 3)) + 150 * label).astype(np.uint8)).save(folder / f"{i}.png")
    run_cli("train", "dataset=image_folder", f"dataset.root={tmp_path / 'a'}", "dataset.val_size=4", "model=mlp",
            "trainer.epochs=3", "trainer.batch_size=8", cwd=tmp_path)
    (run,) = run_dirs(tmp_path / "runs")
    run_cli("eval", run, f"dataset.root={tmp_path / 'b'}", cwd=tmp_path)
    result = json.loads((run / "eval.json").read_text())
    assert result["n"] == 4 and result["accuracy"] == 1.0  # the two classes are 150 grey levels apart


def test_eval_errors_are_one_line(tmp_path):
    bad = run_cli("eval", tmp_path / "missing", cwd=tmp_path, check=False)
    assert bad.returncode == 2 and "checkpoint:" in bad.stderr and "Traceback" not in bad.stderr
    (tmp_path / "fake" / "checkpoints").mkdir(parents=True)
    (tmp_path / "fake" / "checkpoints" / "last.pt").write_bytes(b"garbage")
    bad = run_cli("eval", tmp_path / "fake", cwd=tmp_path, check=False)
    assert bad.returncode == 2 and "is not a loadable deeprob checkpoint" in bad.stderr
    bad = run_cli("eval", tmp_path / "fake", "splt=val", cwd=tmp_path, check=False)
    assert bad.returncode == 2 and "unknown option 'splt'" in bad.stderr
