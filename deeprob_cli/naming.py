"""Sweep jobs named by what the sweep varies, everywhere a run is listed (folders, TensorBoard, deeprob compare).

    deeprob train -m activation=relu,gelu init=xavier,kaiming dataset=synthetic
    → runs/multirun/<date>/<time>/activation=relu,init=xavier  …  activation=gelu,init=kaiming

conf/train.yaml sets `hydra.sweep.subdir: ${deeprob_job:${hydra.job.num}}`. The resolver reads the sweep's own
command line (multirun.yaml, which Hydra writes before the first job) for the keys it sweeps, and names the job
by its values of those keys; keys that do not vary (dataset paths, epochs) stay out of the name. A search
sweeper that writes no multirun.yaml (Optuna), or a name already taken, falls back to the job number.
Torch-free: it runs in every job process, the launcher's workers included.
"""
import os
from pathlib import Path

from omegaconf import OmegaConf

MAX_NAME = 120  # bytes of k=v pairs in a folder name (of a file system's 255); a longer one ends in the job number


def swept_keys(sweep_dir) -> dict:
    """{key: number of values} of the overrides the sweep varies (a,b / [x],[x,y] / range()), from multirun.yaml."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    path = Path(sweep_dir) / "multirun.yaml"
    if not path.is_file():
        return {}
    lines = list(OmegaConf.load(path).hydra.overrides.task)
    keys = {}
    for o in OverridesParser.create().parse_overrides(lines):
        if o.is_sweep_override():
            try:
                keys[o.get_key_element().lstrip("+~")] = len(list(o.sweep_string_iterator()))
            except Exception:  # interval()/tag(): a sweeper's search space, no fixed values
                keys[o.get_key_element().lstrip("+~")] = 0
    return keys


def job_name(num) -> str:
    """`activation=gelu,init=kaiming` for job `num` of the current sweep, or `num` when that says nothing."""
    from hydra.core.hydra_config import HydraConfig

    hydra = HydraConfig.get()
    keys = swept_keys(hydra.sweep.dir)
    values = dict(o.split("=", 1) for o in hydra.overrides.task if "=" in o)
    pairs = [f"{k}={values[k]}" for k in keys if k in values]
    raw = ",".join(pairs)
    name = raw.replace(os.sep, "∕").replace(" ", "")
    folder = Path(hydra.sweep.dir) / name
    # another job's folder: a re-run sweep (values reordered, so job numbers moved) finds each job's own folder by
    # its overrides, not by its number
    taken = bool(name) and len(name.encode()) <= MAX_NAME and folder.exists() and not same_job(folder, hydra, num)
    altered = name != raw  # "a b" and "ab" would share a folder: the number keeps them apart
    if not name or len(name.encode()) > MAX_NAME or taken or altered:
        # a file name holds 255 bytes: cut by bytes (∕ is 3), never inside a character
        return str(num) if not name else f"{name.encode()[:MAX_NAME].decode(errors='ignore')}_{num}"
    return name


def same_job(folder: Path, hydra, num) -> bool:
    """Whether `folder` holds this job (the same overrides; a job restarted by its scheduler finds its own folder)."""
    try:
        saved = OmegaConf.load(folder / ".hydra" / "overrides.yaml")

        def own(lines):  # resume=auto continues a sweep: not part of what a job is
            return sorted(str(o) for o in lines if not str(o).startswith("resume="))
        return own(saved) == own(hydra.overrides.task)
    except Exception:
        return job_order(folder)[1] == int(num)


def jobs_in_sweep(sweep_dir) -> int | None:
    """How many jobs a grid sweep runs (the product of its value counts); None for a search."""
    counts = list(swept_keys(sweep_dir).values())
    if not counts or 0 in counts:
        return None
    total = 1
    for n in counts:
        total *= n
    return total


def register():
    if not OmegaConf.has_resolver("deeprob_job"):
        OmegaConf.register_new_resolver("deeprob_job", job_name)


def job_order(folder: Path):
    """Sort key of a run folder in its sweep: the job's number from .hydra/hydra.yaml (folders are named by values)."""
    folder = Path(folder)
    try:
        num = int(OmegaConf.load(folder / ".hydra" / "hydra.yaml").hydra.job.num)
    except Exception:
        num = int(folder.name) if folder.name.isdigit() else 1 << 30
    return str(folder.parent), num, folder.name
