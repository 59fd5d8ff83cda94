"""Checkpoints: written atomically, read back with torch.load(weights_only=True) so loading runs no code.

A checkpoint holds everything a run needs to continue bit for bit: model, optimizer, schedule, preprocessing
statistics, the run's config, the progress counters (epoch, step, this epoch's data order and position) and
the states of every random number generator (python, numpy, torch, CUDA, the data-order and augmentation
generators). `deeprob train resume=RUN_DIR` reads it back.
"""
import io
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from . import UserError, __version__
from .folders import atomic_write, temp_path

FORMAT = "deeprob-checkpoint/1"


def save_checkpoint(path: Path, state: dict):
    """Write state to path atomically (atomic_write): a kill leaves the old or the new file, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, **state}, buffer)
    atomic_write(path, buffer.getbuffer())


def first_nonfinite(tree, name: str = "") -> str | None:
    """The name of the first floating-point tensor in a nested dict/list of a checkpoint's state that holds NaN or
    ±inf (weights, batch-norm statistics, an averager's trained weights, optimizer moments), or None."""
    if isinstance(tree, torch.Tensor):
        return name if tree.is_floating_point() and not torch.isfinite(tree).all() else None
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, (list, tuple)) else ()
    for key, value in items:
        found = first_nonfinite(value, f"{name}.{key}" if name else str(key))
        if found:
            return found
    return None


def link_checkpoint(source: Path, target: Path):
    """Make target the same file as source (best.pt ← last.pt) atomically, without writing it twice."""
    tmp = temp_path(target)
    try:
        tmp.unlink(missing_ok=True)
        os.link(source, tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load_checkpoint(path: Path) -> dict:
    """Read a deeprob checkpoint; anything else (torn, foreign, carrying pickled code) is refused."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint: {path} does not exist; pass the folder of a run that finished an epoch")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"checkpoint: {path} is not a loadable deeprob checkpoint ({reason[:200]}); "
                        f"nothing was run from it") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UserError(f"checkpoint: {path} is not a deeprob checkpoint (format {FORMAT} expected)")
    return state


def rng_state(*generators) -> dict:
    """The state of python's, numpy's and torch's global generators and of the given torch.Generators."""
    version, mt, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"python": [version, torch.tensor(mt, dtype=torch.int64), gauss],
            "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "generators": [g.get_state() for g in generators]}


def restore_rng(state: dict, *generators):
    """Put every generator back where rng_state() found it."""
    version, mt, gauss = state["python"]
    random.setstate((version, tuple(mt.tolist()), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    for generator, saved in zip(generators, state["generators"]):
        generator.set_state(saved)


def provenance() -> dict:
    """Library versions and the git commit of deeprob's source tree (when it is a checkout)."""
    import hydra
    import torchvision

    record = {"deeprob": __version__, "python": sys.version.split()[0], "torch": str(torch.__version__),
              "torchvision": str(torchvision.__version__), "hydra": hydra.__version__, "numpy": np.__version__,
              "git_commit": None}
    source = Path(__file__).resolve().parent.parent
    if (source / ".git").exists():
        try:
            commit = subprocess.run(["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True,
                                    text=True, timeout=5).stdout.strip()
            dirty = subprocess.run(["git", "-C", str(source), "status", "--porcelain", "--untracked-files=no"],
                                   capture_output=True, text=True, timeout=5).stdout.strip()
            record["git_commit"] = (commit + ("+dirty" if dirty else "")) or None
        except (OSError, subprocess.TimeoutExpired):
            pass
    return record
