"""Run folders owned: a folder is claimed (an exclusive lock) before Hydra writes into it, released when its run
ends, and discarded again when the command was refused; fresh folders for new runs; a folder's small records.

    deeprob train                                # launch.prepare() claims runs/<date>/<time> (or <time>-1, ...)
    deeprob train hydra.run.dir=runs/a           # a second process on runs/a is refused while the first runs

Torch-free: the launch claims the folder before the training modules are imported.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from . import UserError
from .trust import check_entries


def write_json(path: Path, value: dict):
    """Write JSON atomically (atomic_write): a reader sees the old file or the new one, never half."""
    atomic_write(Path(path), (json.dumps(value, indent=2) + "\n").encode())


def read_summary(out: Path) -> dict:
    """A run folder's summary.json ({} when there is none or it cannot be read)."""
    try:
        value = json.loads((Path(out) / "summary.json").read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def shell_quote(path) -> str:
    """A path as a shell word (spaces and non-ASCII characters survive a copy and paste)."""
    return shlex.quote(str(path))


def hydra_value(value) -> str:
    """A string as a quoted Hydra override value: any path (spaces, non-ASCII, `=`) reaches Hydra unchanged."""
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


# ---------------------------------------------------------------- atomic writes (checkpoints, summary.json)

# atomic_write's temporary files, `.NAME.deeprob-tmpPID` beside the file they replace: a name no user file has, so
# that clearing a killed process's leftovers can never remove a user's `.notes.tmpl` or `.db.tmp-2024`
TEMP_SUFFIX = ".deeprob-tmp"
STALE = re.compile(r"\..+" + re.escape(TEMP_SUFFIX) + r"[0-9]+")
LEGACY = re.compile(r"\.(last|best)\.pt\.tmp[0-9]+")  # checkpoints/ temporaries of deeprob before this name


def temp_path(path: Path) -> Path:
    """The temporary file atomic_write() fills before renaming it onto path."""
    return path.with_name(f".{path.name}{TEMP_SUFFIX}{os.getpid()}")


def atomic_write(path: Path, data: bytes):
    """Write data to path via a temporary file, fsync and a rename: a reader (or a kill at any instant) sees the
    old file or the new one, never half of one. On any failure (a full disk, a signal) the temporary file is
    removed and the old file is left as it was. The temporary is created afresh (O_EXCL, never through a link
    a shared folder may hold under its name)."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        tmp.unlink(missing_ok=True)  # a killed earlier process with this pid (or a planted link): removed, not followed
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def remove_stale_temps(folder: Path):
    """Delete the temporary files that killed deeprob processes left behind: only plain files named the way
    atomic_write() names them (and checkpoints/' old .last.pt.tmpPID); call only while holding the folder's lock."""
    for sub, pattern in (("", STALE), ("checkpoints", STALE), ("checkpoints", LEGACY)):
        try:
            entries = list(os.scandir(Path(folder) / sub))
        except OSError:
            continue
        for entry in entries:
            if pattern.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                Path(entry.path).unlink(missing_ok=True)


# ---------------------------------------------------------------- run folders owned: claimed before Hydra writes

@dataclass
class FolderLock:
    """An exclusive flock on FOLDER/.lock, held for as long as the folder's run goes on."""

    folder: Path
    lock: object  # the open .lock file
    created: list  # the folders this process made for it, deepest first (what a refusal removes again)
    pinned: bool = False  # taken by launch.prepare() before Hydra started; handed back by train.cli()


LOCKS: dict = {}  # resolved folder → FolderLock, in this process


def claim(folder: Path, created: list | None = None, pinned: bool = False) -> FolderLock:
    """Lock `folder` (made if missing) for this process; the same folder's existing claim is reused. Stale
    temporary files of killed processes are removed once the lock is held. UserError when another process holds
    it or the folder cannot be made."""
    folder = Path(folder)
    key = _key(folder)
    if key in LOCKS:
        return LOCKS[key]
    check_entries(folder)  # a link named .lock, train.log, checkpoints/... would carry deeprob's writes outside
    created = list(created or []) + make_folder(folder)
    try:
        lock = open(folder / ".lock", "a")
    except OSError as e:
        _remove_created(created)
        raise UserError(cannot_write(folder, e)) from None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.close()
        raise UserError(f"run folder {folder} is in use by another deeprob process; wait for it to finish or "
                        f"choose another folder") from None
    remove_stale_temps(folder)
    LOCKS[key] = FolderLock(folder, lock, created, pinned)
    return LOCKS[key]


def release(folder: Path):
    """Give up the lock on folder (the .lock file stays: removing it would race with a process about to lock it)."""
    entry = LOCKS.pop(_key(folder), None)
    if entry is not None:
        entry.lock.close()


def discard(folder: Path):
    """A refused command's folder: remove what this process made in it (when it made the folder), release it."""
    entry = LOCKS.get(_key(folder))
    if entry is None:
        return
    if entry.created and not (folder / "checkpoints").exists():  # work worth keeping is never removed
        shutil.rmtree(folder / ".hydra", ignore_errors=True)
        for name in ("train.log", "summary.json", ".lock", *(p.name for p in folder.glob("events.out.tfevents.*"))):
            (folder / name).unlink(missing_ok=True)
    release(folder)
    _remove_created(entry.created)


def release_all(discard_created: bool = False):
    """Every claim of this process released (train.cli()'s end); `discard_created`: a command that never ran."""
    for entry in list(LOCKS.values()):
        discard(entry.folder) if discard_created else release(entry.folder)


def make_folder(folder: Path) -> list:
    """mkdir -p folder; the folders it made, deepest first. UserError (one line) when it cannot be made, after
    removing the parents it did make."""
    missing, probe = [], Path(os.path.abspath(folder))
    while probe != probe.parent:
        try:
            if probe.exists():
                break
        except OSError:  # a name too long to look up: missing as well
            pass
        missing.append(probe)
        probe = probe.parent
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        _remove_created(missing)
        raise UserError(cannot_write(folder, e)) from None
    return missing


def cannot_write(folder: Path, e: OSError) -> str:
    fix = "a shorter name" if e.errno == errno.ENAMETOOLONG else "a folder you can write to"
    return (f"hydra.run.dir: cannot create or write the run folder {folder} ({e.strerror or e}); choose {fix}, "
            f"e.g. hydra.run.dir=runs/NAME")


def _remove_created(created: list):
    for folder in created:  # deepest first; stops at the first one something else has written into
        try:
            Path(folder).rmdir()
        except OSError as e:
            if e.errno not in (errno.ENOENT, errno.ENAMETOOLONG):  # (those were never made)
                break


def _key(folder: Path) -> str:
    return os.path.abspath(folder)


# ---------------------------------------------------------------- what makes a folder another run's

RUN_FILES = ("summary.json", "checkpoints", "stats.json")  # what makes a folder another run's


def holds_run(folder: Path) -> bool:
    try:
        return any((Path(folder) / name).exists() for name in RUN_FILES)
    except OSError:  # a name too long to look up holds nothing; creating it says why it cannot be used
        return False


def _record_folder(job_dir: str):
    """hydra.output_subdir of a re-run sweep's job: none where the folder already holds a run."""
    return None if holds_run(Path(job_dir)) else ".hydra"


def register_resolver():
    """${deeprob_record:...} (launch.prepare's hydra.output_subdir for sweeps re-run into their folder)."""
    if not OmegaConf.has_resolver("deeprob_record"):
        OmegaConf.register_new_resolver("deeprob_record", _record_folder)


def holds_sweep(folder: Path) -> bool:
    try:
        return any(holds_run(job) for job in Path(folder).iterdir() if job.is_dir())
    except OSError:
        return False


def fresh_folder(path: str) -> tuple:
    """(folder, folders made) for a new run: `path`, or path-1, path-2, ... when it exists; mkdir is atomic, so
    two processes starting in the same second get two folders."""
    base = Path(path)
    made = make_folder(base.parent)
    for n in range(10_000):
        folder = base if n == 0 else base.with_name(f"{base.name}-{n}")
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        except OSError as e:
            _remove_created(made)
            raise UserError(cannot_write(folder, e)) from None
        return folder, [folder, *made]
    raise UserError(f"hydra.run.dir: {base} and 10000 numbered variants exist; choose a folder")


