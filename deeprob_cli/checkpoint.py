"""Checkpoints: written atomically, read back with torch.load(weights_only=True) so loading runs no code."""
import io
import os
from pathlib import Path

import torch

from . import UserError

FORMAT = "deeprob-checkpoint/1"


def save_checkpoint(path: Path, state: dict):
    """Write state to path via a temporary file and a rename: a kill leaves the old or the new file, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, **state}, buffer)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(buffer.getvalue())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict:
    """Read a deeprob checkpoint; anything else (torn, foreign, carrying pickled code) is refused."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint: {path} does not exist; pass the folder of a run that finished an epoch")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"checkpoint: {path} is not a loadable deeprob checkpoint ({reason[:200]}); nothing was run from it") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UserError(f"checkpoint: {path} is not a deeprob checkpoint (format {FORMAT} expected)")
    return state
