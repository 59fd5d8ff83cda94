"""Faults a user, a disk or a signal can cause, injected for real: Ctrl-C/SIGTERM in every phase of a run, a full
disk, a folder another process holds, two runs started in the same second, refused commands, re-run sweeps.
Each ends in one line and an exit code, and loses nothing (README "When things go wrong"). kill -9 lives in
tests/test_resume.py, beside the uninterrupted reference run it is compared with.

    pytest tests/test_faults.py            # pytest -m slow tests/test_faults.py for the rest of the grid
"""
import errno
import fcntl
import json
import os
import shlex
import signal
from pathlib import Path

import pytest
import torch

from conftest import read_events, run_cli, run_dirs, summary, tree_digest

import deeprob_cli.train as train_module
from deeprob_cli import checkpoint as checkpoint_module
from deeprob_cli import exits, launch
from deeprob_cli import folders as folders_module

RUN = ["dataset=synthetic", "dataset.num_train=512", "dataset.val_size=128", "model.widths=[8,16]",
       "trainer.epochs=2", "trainer.batch_size=64", "log.hist_every=3", "augment=[flip]"]
METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "test_acc", "steps", "epochs_completed")
FOLDER = "a b/ü run"  # the printed resume command must survive spaces and non-ASCII characters


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("faults-reference")
    run_cli("train", *RUN, "hydra.run.dir=ref", cwd=cwd, env={"DEEPROB_CACHE": str(cwd / "cache")})
    return cwd / "ref"


def same_run(run: Path, reference: Path):
    """Metrics, weights and every TensorBoard scalar (each step exactly once) as in the uninterrupted run."""
    a, b = summary(run), summary(reference)
    assert a["status"] == "completed" and {k: a[k] for k in METRICS} == {k: b[k] for k in METRICS}
    wa = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model"]
    wb = torch.load(reference / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wb)
    assert read_events(run) == read_events(reference)


def signal_in(monkeypatch, name: str, sig: int, when=lambda *a, **k: True):
    """Wrap train.py's `name` so that, the first time `when` holds, the process sends itself `sig` and goes on:
    the signal arrives in the middle of that phase, as a user's Ctrl-C or a scheduler's SIGTERM would."""
    original = getattr(train_module, name)
    sent = []

    def wrapped(*args, **kwargs):
        if not sent and when(*args, **kwargs):
            assert signal.getsignal(sig) not in (signal.SIG_DFL, signal.default_int_handler), "no handler installed"
            sent.append(sig)
            os.kill(os.getpid(), sig)
        return original(*args, **kwargs)

    monkeypatch.setattr(train_module, name, wrapped)
    return sent


PHASES = {  # phase → (train.py function in which the signal lands, condition, a checkpoint is kept)
    "start-up": ("load_data", lambda *a, **k: True, False),
    "training": ("train_step", lambda job, run, **k: run.progress.step == 5, True),
    "validation": ("evaluate", lambda *a, **k: True, True),
    "the final evaluation": ("final_scores", lambda *a, **k: True, True),
}
CASES = [pytest.param(phase, sig, marks=[] if (phase, sig) in {
    ("start-up", signal.SIGTERM), ("training", signal.SIGINT), ("validation", signal.SIGINT),
    ("the final evaluation", signal.SIGTERM)} else [pytest.mark.slow]) for phase in PHASES
    for sig in (signal.SIGINT, signal.SIGTERM)]


@pytest.mark.parametrize("phase, sig", CASES, ids=[f"{p.values[0]}-{p.values[1].name}" for p in CASES])
def test_a_signal_in_any_phase_is_one_line_a_summary_and_a_resume_command_that_works(
        tmp_path, reference, monkeypatch, phase, sig):
    name, when, kept = PHASES[phase]
    sent = signal_in(monkeypatch, name, sig, when)
    result = run_cli("train", *RUN, f"hydra.run.dir={FOLDER}", cwd=tmp_path, check=False)
    monkeypatch.undo()
    run = tmp_path / FOLDER
    assert sent == [sig] and result.returncode == 128 + sig, result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert "Traceback" not in result.stderr and line.startswith(f"deeprob train: interrupted: {sig.name} ")
    s = summary(run)
    assert s["status"] == "interrupted" and s["signal"] == sig.name
    assert s["resume"] == f"deeprob train resume={shlex.quote(str(run))}" and line.endswith(s["resume"])
    assert (run / "checkpoints" / "last.pt").is_file() == kept
    if phase == "training":  # the step in progress finished and was saved
        assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["progress"]["step"] == 6 == s["steps"]
    if phase == "validation":  # the epoch whose validation was interrupted is complete in its checkpoint
        assert s["epochs_completed"] == 1 and s["val_acc"] is not None
    if phase == "the final evaluation":
        assert s["epochs_completed"] == 2 and "during the final evaluation" in line
    assert not list(run.rglob(".*.deeprob-tmp*"))
    command = shlex.split(s["resume"])  # exactly what a user pastes into a shell
    assert command[:2] == ["deeprob", "train"]
    run_cli(*command[1:], cwd=tmp_path)
    same_run(run, reference)


@pytest.mark.slow  # the same command in-process is test_a_signal_in_any_phase_...
def test_the_resume_command_works_from_a_real_shell(tmp_path, reference):
    """The one real-interpreter check of this file: SIGTERM to a real process, then its printed command run by
    /bin/sh in a path with a space and a non-ASCII character."""
    import subprocess
    import sys
    import time

    from conftest import REPO

    env = {**os.environ, "PYTHONPATH": str(REPO), "HYDRA_FULL_ERROR": "0"}
    proc = subprocess.Popen([sys.executable, "-m", "deeprob_cli", "train", *RUN, "trainer.checkpoint_every=2",
                             f"hydra.run.dir={FOLDER}"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    last = tmp_path / FOLDER / "checkpoints" / "last.pt"
    deadline = time.time() + 120
    while not last.exists():
        assert proc.poll() is None and time.time() < deadline, "the run ended before its first checkpoint"
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM and "Traceback" not in err, err
    command = summary(tmp_path / FOLDER)["resume"]
    shell = subprocess.run(["/bin/sh", "-c", command.replace("deeprob", f"{shlex.quote(sys.executable)} -m deeprob_cli",
                                                               1)], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=300)
    assert shell.returncode == 0, shell.stderr
    s = summary(tmp_path / FOLDER)
    assert s["status"] == "completed" and s["steps"] == summary(reference)["steps"]


# ---------------------------------------------------------------- a full disk

def enospc_on(monkeypatch, fragment: str, after: int):
    """os.fsync fails with ENOSPC for files whose path contains `fragment`, from the (after+1)-th such call on:
    the bytes are written, the disk is full when they are made durable (what a real full disk does to a write
    that the page cache accepted)."""
    real, calls = os.fsync, []

    def fsync(fd):
        if fragment in os.readlink(f"/proc/self/fd/{fd}"):
            calls.append(fd)
            if len(calls) > after:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)

    monkeypatch.setattr(checkpoint_module.os, "fsync", fsync)
    return calls


def test_a_full_disk_ends_in_one_line_with_nothing_corrupt_and_resume_completes(tmp_path, reference, monkeypatch):
    calls = enospc_on(monkeypatch, "/checkpoints/", after=3)
    result = run_cli("train", *RUN, "trainer.checkpoint_every=2", "hydra.run.dir=run", cwd=tmp_path, check=False)
    monkeypatch.undo()
    run = tmp_path / "run"
    assert len(calls) == 4 and result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("deeprob train: error: cannot write ") and "No space left on device" in line
    assert line.endswith(f"then continue with: deeprob train resume={run}")
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)  # the last complete checkpoint
    assert state["progress"]["step"] == 6  # checkpoints at steps 2, 4, 6 were written; the one at 8 hit the full disk
    assert not list(run.rglob(".*.deeprob-tmp*"))  # no partial temporary file
    assert summary(run)["status"] == "failed" and "No space left" in summary(run)["error"]
    run_cli("train", "resume=run", cwd=tmp_path)  # space freed: the run continues from step 6
    same_run(run, reference)


def test_a_full_disk_never_leaves_a_half_written_status_file(tmp_path, monkeypatch):
    target = tmp_path / "summary.json"
    folders_module.write_json(target, {"status": "interrupted"})
    enospc_on(monkeypatch, str(tmp_path), after=0)
    with pytest.raises(OSError) as e:
        folders_module.write_json(target, {"status": "completed", "pad": "x" * 100_000})
    assert e.value.errno == errno.ENOSPC
    assert json.loads(target.read_text()) == {"status": "interrupted"}
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


@pytest.mark.slow
def test_a_real_full_tmpfs(tmp_path, reference):
    """The same on a real 3 MB tmpfs (root only): the disk fills up while the run writes its checkpoints."""
    import subprocess

    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (not root); the injected ENOSPC test covers this")
    try:
        (disk / "ballast").write_bytes(b"\0" * (2 * 1024 * 1024 + 512 * 1024))  # leaves about 0.5 MB
        result = run_cli("train", *RUN, "trainer.checkpoint_every=1", "hydra.run.dir=disk/run", cwd=tmp_path,
                         check=False)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert "No space left on device" in result.stderr.strip().splitlines()[-1]
        assert not list((disk / "run").rglob(".*.deeprob-tmp*"))
        if (disk / "run" / "checkpoints" / "last.pt").exists():
            torch.load(disk / "run" / "checkpoints" / "last.pt", weights_only=True)  # whole, not torn
        (disk / "ballast").unlink()
        if (disk / "run" / "checkpoints" / "last.pt").exists():
            run_cli("train", "resume=disk/run", cwd=tmp_path)
            same_run(disk / "run", reference)
    finally:
        subprocess.run(["umount", str(disk)], check=True)


# ---------------------------------------------------------------- run folders owned

def test_a_folder_another_process_holds_is_refused_before_hydra_writes(tmp_path):
    (tmp_path / "run").mkdir()
    with open(tmp_path / "run" / ".lock", "a") as lock:  # what a running deeprob process holds
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = run_cli("train", *RUN, "hydra.run.dir=run", cwd=tmp_path, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "run folder run is in use by another deeprob process" in result.stderr.strip().splitlines()[-1]
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [".lock"]  # no .hydra/, no train.log


@pytest.mark.slow
def test_a_resume_of_a_running_run_is_refused_and_the_run_goes_on(tmp_path):
    import subprocess
    import sys
    import time

    from conftest import REPO

    proc = subprocess.Popen([sys.executable, "-m", "deeprob_cli", "train", *RUN, "trainer.epochs=6",
                             "trainer.checkpoint_every=1", "hydra.run.dir=run"], cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    while not (tmp_path / "run" / "checkpoints" / "last.pt").exists():
        assert proc.poll() is None
        time.sleep(0.02)
    config = (tmp_path / "run" / ".hydra" / "config.yaml").read_text()
    result = run_cli("train", "resume=run", cwd=tmp_path, check=False)
    assert result.returncode == 2 and "is in use by another deeprob process" in result.stderr
    assert proc.wait(timeout=300) == 0
    assert summary(tmp_path / "run")["status"] == "completed"
    assert (tmp_path / "run" / ".hydra" / "config.yaml").read_text() == config


def test_two_runs_started_in_the_same_second_get_two_folders(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(launch.time, "time", lambda: 1_800_000_000.0)  # one frozen second for both
    try:
        first = launch.prepare("train", "train", ["dataset=synthetic"])
        second = launch.prepare("train", "train", ["dataset=synthetic"])
    finally:
        folders_module.release_all()
        exits.SIGNALS.uninstall()
    folders = [next(a for a in args if a.startswith("hydra.run.dir=")).split("=", 1)[1].strip("'")
               for args in (first, second)]
    assert folders[1] == folders[0] + "-1" and all((tmp_path / f).is_dir() for f in folders)


def test_a_refused_command_after_hydra_started_leaves_no_folder(tmp_path):
    from test_data import write_folder

    write_folder(tmp_path / "data", "train", ["a", "b"], 3)
    (tmp_path / "data" / "train" / "b" / "broken.png").write_bytes(b"\x89PNG not really")
    work = tmp_path / "work"
    work.mkdir()
    result = run_cli("train", "dataset=image_folder", f"dataset.root={tmp_path / 'data'}", "dataset.val_size=2",
                     cwd=work, check=False)
    assert result.returncode == 2 and "cannot read image" in result.stderr.strip().splitlines()[-1]
    assert list(work.iterdir()) == []  # not even runs/


def test_a_finished_sweep_run_again_into_its_folder_keeps_every_result(tmp_path):
    sweep = ["-m", "optim.lr=0.05,0.1", "dataset=synthetic", "model=mlp", "trainer.epochs=1", "log.hist_every=0",
             "hydra.sweep.dir=sweep"]
    run_cli("train", *sweep, cwd=tmp_path)
    before = tree_digest(tmp_path / "sweep")
    result = run_cli("train", *sweep, cwd=tmp_path, check=False)
    assert result.returncode == 2 and "already holds a sweep's runs" in result.stderr and "resume=auto" in result.stderr
    assert tree_digest(tmp_path / "sweep") == before
    kept = {p: p.read_bytes() for p in (tmp_path / "sweep").rglob("*")  # every job's results and .hydra/ record
            if p.is_file() and p.name not in ("train.log", "sweep.json", "multirun.yaml")}  # (the sweep's log)
    run_cli("train", *sweep, "resume=auto", cwd=tmp_path)  # completed jobs: skipped, nothing rewritten
    assert [p for p, data in kept.items() if p.read_bytes() != data] == []
    assert [summary(job)["status"] for job in run_dirs(tmp_path / "sweep")] == ["completed", "completed"]


def test_stale_temporary_files_of_a_killed_process_go_at_the_next_start(tmp_path):
    run_cli("train", *RUN, "trainer.epochs=1", "hydra.run.dir=run", cwd=tmp_path)
    stale = [tmp_path / "run" / "checkpoints" / ".last.pt.tmp99999", tmp_path / "run" / ".summary.json.deeprob-tmp99999"]
    users = [tmp_path / "run" / ".notes.tmpl", tmp_path / "run" / ".summary.json.tmp99999"]  # not deeprob's names
    for path in stale + users:
        path.write_bytes(b"half")
    result = run_cli("train", "resume=run", cwd=tmp_path, check=False)  # refused (completed), yet it tidies up
    assert result.returncode == 2 and "already completed" in result.stderr
    assert not any(p.exists() for p in stale) and all(p.read_bytes() == b"half" for p in users)


# ---------------------------------------------------------------- divergence

def test_the_last_good_checkpoint_is_finite_by_construction(tmp_path):
    """lr=1e30: the first step's loss is finite but its update makes the weights infinite; with a checkpoint after
    every step, the checkpoint of those weights is refused and the run ends as diverged."""
    # log.hist_every=0: torch's make_histogram fails on finite weights near 1e30 (reported to the monitor's owner)
    result = run_cli("train", *RUN, "optim.lr=1e30", "trainer.checkpoint_every=1", "log.hist_every=0",
                     "hydra.run.dir=run", cwd=tmp_path, check=False)
    assert result.returncode == 3 and "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]
    s = summary(tmp_path / "run")
    assert s["status"] == "diverged" and isinstance(s["last_finite_loss"], float)
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    if last.exists():
        weights = torch.load(last, weights_only=True)["model"]
        assert all(torch.isfinite(w).all() for w in weights.values())
        assert f"the last good checkpoint (a finite one) is {last}" in line
    else:
        assert "no checkpoint had been written yet" in line


def test_a_checkpoint_of_non_finite_weights_is_refused(tmp_path, monkeypatch):
    """A step whose loss is finite but whose update leaves an infinite weight (injected here: a finite lr rarely
    does it in one step): the next checkpoint is refused and the run ends as diverged, the last checkpoint kept."""
    original = train_module.train_step

    def step(job, run, **kwargs):
        original(job, run, **kwargs)
        if run.progress.step == 3:
            next(job.model.parameters()).data.fill_(float("inf"))

    monkeypatch.setattr(train_module, "train_step", step)
    result = run_cli("train", *RUN, "trainer.checkpoint_every=1", "hydra.run.dir=run", cwd=tmp_path, check=False)
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    assert result.returncode == 3 and "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("deeprob train: diverged: a weight became NaN or infinite at step 3")
    assert line.endswith(f"the last good checkpoint (a finite one) is {last}")
    state = torch.load(last, weights_only=True)
    assert state["progress"]["step"] == 2 and all(torch.isfinite(w).all() for w in state["model"].values())
    s = summary(tmp_path / "run")
    assert s["status"] == "diverged" and s["step"] == 3 and isinstance(s["last_finite_loss"], float)


# ---------------------------------------------------------------- deeprob eval

def test_eval_of_a_read_only_run_prints_the_result_and_says_eval_json_was_not_written(tmp_path, monkeypatch, capsys):
    from deeprob_cli import evaluate

    run_cli("train", *RUN, "trainer.epochs=1", "hydra.run.dir=run", cwd=tmp_path)

    def read_only(path, value):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

    monkeypatch.setattr(evaluate, "write_json", read_only)
    with pytest.raises(SystemExit) as exit_:
        evaluate.main([str(tmp_path / "run")])
    out, err = capsys.readouterr()
    assert exit_.value.code == 2 and out.startswith("val: accuracy ")
    assert err.strip() == (f"deeprob eval: error: the result above could not be written to {tmp_path / 'run' / 'eval.json'} "
                           f"(Read-only file system); make the run folder writable to keep it")
    assert not (tmp_path / "run" / "eval.json").exists()


def test_eval_of_data_the_model_does_not_fit_is_one_line(tmp_path):
    from test_data import write_folder

    write_folder(tmp_path / "small", "train", ["a", "b"], 6, size=(8, 6))
    write_folder(tmp_path / "large", "train", ["a", "b"], 6, size=(10, 10))
    run_cli("train", "dataset=image_folder", f"dataset.root={tmp_path / 'small'}", "dataset.val_size=4",
            "trainer.epochs=1", "trainer.batch_size=4", "model=mlp", "model.width=8", "augment=[]",
            "log.hist_every=0", "hydra.run.dir=run", cwd=tmp_path)
    result = run_cli("eval", "run", f"dataset.root={tmp_path / 'large'}", cwd=tmp_path, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "images of shape [3, 10, 10] do not fit the run's model, trained on [3, 6, 8]" in result.stderr


def test_an_optuna_sweep_whose_every_trial_diverges_is_one_line(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    result = run_cli("train", "-m", "hydra/sweeper=optuna", "hydra.sweeper.direction=maximize",
                     "hydra.sweeper.n_trials=2", "optim.lr=interval(1e29,1e30)", "dataset=synthetic", "model=mlp",
                     "model.width=16", "trainer.epochs=1", "log.hist_every=0", "hydra.sweep.dir=opt", cwd=tmp_path,
                     check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "every trial of the sweep diverged or failed" in result.stderr.strip().splitlines()[-1]
    assert [summary(job)["status"] for job in run_dirs(tmp_path / "opt")] == ["diverged", "diverged"]
