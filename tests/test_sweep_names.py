"""Sweep job folders are named by what the sweep varies, and the names stay one per job: a re-run finds each
job's own folder whatever the order of the values, a name too long for the file system falls back to the job
number, and values that would share a folder keep apart."""
import json

from conftest import FAST, run_cli


def _folders(sweep):
    return sorted(p.name for p in sweep.iterdir() if p.is_dir())


def test_a_finished_sweep_rerun_with_its_values_reordered_retrains_nothing(tmp_path):
    run_cli("train", "-m", *FAST, "trainer.seed=0,1", "hydra.sweep.dir=sw", cwd=tmp_path)
    first = {name: (tmp_path / "sw" / name / "summary.json").read_text() for name in _folders(tmp_path / "sw")}
    assert sorted(first) == ["trainer.seed=0", "trainer.seed=1"]
    run_cli("train", "-m", *FAST, "trainer.seed=1,0", "hydra.sweep.dir=sw", "resume=auto", cwd=tmp_path)
    assert _folders(tmp_path / "sw") == sorted(first)  # no trainer.seed=0_1 beside them
    assert all((tmp_path / "sw" / n / "summary.json").read_text() == text for n, text in first.items())


def test_a_job_name_too_long_in_bytes_falls_back_to_a_shorter_one(tmp_path):
    """100 slashes in a value: 100 × "∕" (3 bytes each) is 300 bytes, over the 255 of a folder name."""
    long = "/" * 100
    run_cli("train", "-m", *FAST, f"+note={long},b", "hydra.sweep.dir=sw", cwd=tmp_path)
    names = _folders(tmp_path / "sw")
    assert len(names) == 2 and all(len(n.encode()) <= 255 for n in names)
    for name in names:
        assert json.loads((tmp_path / "sw" / name / "summary.json").read_text())["status"] == "completed"
