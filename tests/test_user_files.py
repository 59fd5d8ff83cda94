"""deeprob removes only what it made itself: the run-folder lock clears a killed process's temporaries (named
`.NAME.deeprob-tmpPID`), never a user's file that merely looks temporary, in a folder given as hydra.run.dir."""
import os

from conftest import FAST, run_cli

USER_FILES = [".notes.tmpl", ".db.tmp-2024", ".cache.tmp", ".x.tmp5", ".summary.json.tmp123", "sub/.a.tmp1"]


def _plant(folder):
    for name in USER_FILES:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(f"the user's {name}\n")


def _kept(folder):
    return all((folder / n).read_text() == f"the user's {n}\n" for n in USER_FILES)


def test_a_refused_run_in_a_users_folder_removes_none_of_their_files(tmp_path):
    folder = tmp_path / "mine"
    _plant(folder)  # refused once the folder is claimed: the data is not where dataset.root says
    result = run_cli("train", "dataset=cifar10", "dataset.download=false", f"dataset.root={tmp_path / 'none'}",
                     f"hydra.run.dir={folder}", cwd=tmp_path, check=False)
    assert result.returncode == 2 and "dataset.root" in result.stderr, result.stderr
    assert _kept(folder)


def test_a_run_removes_its_own_stale_temporaries_and_keeps_the_users(tmp_path):
    folder = tmp_path / "mine"
    _plant(folder)
    (tmp_path / "elsewhere").mkdir()
    (folder / "checkpoints").mkdir()  # (not a run yet: no summary.json; resume=auto continues in it)
    old = folder / "checkpoints" / ".last.pt.tmp4242"  # deeprob's own temporary under its earlier name
    old.write_bytes(b"half a checkpoint")
    stale = [folder / f".summary.json.deeprob-tmp{os.getpid() + 1}", folder / f".eval.json.deeprob-tmp7"]
    for path in stale:
        path.write_bytes(b"half a file")
    link = folder / ".x.deeprob-tmp9"
    link.symlink_to(tmp_path / "elsewhere")  # not a plain file: not deeprob's, left alone
    run_cli("train", *FAST, f"hydra.run.dir={folder}", "resume=auto", cwd=tmp_path)
    assert not any(p.exists() for p in stale) and not old.exists()
    assert link.is_symlink()
    assert _kept(folder)
    assert (folder / "checkpoints" / "last.pt").is_file() and (folder / "summary.json").is_file()
