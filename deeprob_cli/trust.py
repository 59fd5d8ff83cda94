"""A run folder is data, never code: what deeprob reads back from one is checked here before anything uses it.

    deeprob eval RUN_DIR          deeprob train resume=RUN_DIR          cd RUN_DIR && deeprob plot activations

`trusted(config, source)` accepts a config read from disk (.hydra/config.yaml, a checkpoint's config) only where
every group names one of deeprob's own options (its `_target_` is the one conf/<group>/<option>.yaml declares)
with that option's parameters as plain values (numbers, strings, booleans, lists of them), and every other key is
one of conf/train.yaml's settings; anything else (a foreign callable, a nested `_target_`, `_args_`, a `hydra:` or
`defaults:` key, an interpolation) is a one-line refusal. Hydra's `_target_` blocklist is a backstop, not the rule.
`data_settings(stored, given)` gives a run's dataset with the user's own location: nothing read from a run folder
chooses where deeprob reads, writes or what it downloads. `check_entries(folder)` refuses a run folder whose files
deeprob writes are links or special files (a link named train.log would make the log overwrite its target).
Torch-free.
"""
import inspect
import os
import stat
from functools import lru_cache
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf

from . import CONFIG_DIR, UserError
from .config import LEGACY_DATASETS, check_option, option_files, options
from .exits import report

SINGLE = ("dataset", "model", "activation", "init", "preprocess", "tta", "optim", "schedule", "average")
MULTI = ("augment", "regularizer")
SETTINGS = ("resume", "trainer", "log")  # conf/train.yaml's keys outside the groups
SPECIAL = ("_target_", "_partial_", "_recursive_", "_convert_", "_args_")
LOCATION = ("root", "download", "url", "md5")  # where a dataset is read from / fetched: always the user's own
# the files deeprob writes into a run folder (a link or special file there would redirect or block the write)
WRITTEN = (".lock", "train.log", "summary.json", "eval.json", "stats.json", "checkpoints", ".hydra")


@lru_cache(maxsize=None)
def _settings() -> dict:
    raw = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "train.yaml"), resolve=False)
    return {k: raw[k] for k in SETTINGS}


def _plain(value) -> bool:
    """A number, string, boolean, null or a list of those (no interpolation: a value on disk is a value)."""
    if isinstance(value, (list, tuple)):
        return all(_plain(v) and not isinstance(v, (list, tuple)) for v in value)
    if isinstance(value, str):
        return "${" not in value
    return value is None or isinstance(value, (bool, int, float))


def _parameters(target: str) -> set:
    """The named parameters of a deeprob option's callable (conf/ names it, so importing it runs only our code)."""
    from hydra.utils import get_object

    try:
        signature = inspect.signature(get_object(target))
    except (TypeError, ValueError):
        return set()
    return {n for n, p in signature.parameters.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}


def trusted_option(group: str, node, source: str, name: str | None = None) -> dict:
    """`node` (an option of `group`, `name` for multi-select groups) if it is one of conf/<group>/'s options with
    that option's parameters as plain values; UserError naming the key otherwise."""
    key = f"{group}.{name}" if name else group
    refuse = _refuser(source)
    if not isinstance(node, dict):
        refuse(key, node, f"an option of conf/{group}/")
    files = option_files(group)
    if name is not None:
        if name not in files:
            refuse(key, name, f"one of {', '.join(files)}")
        candidates = {name: files[name]}
    else:
        candidates = files
    match = [o for o, y in candidates.items() if y.get("_target_") == node.get("_target_")]
    what = ("_target_", node.get("_target_"), ", ".join(str(y.get("_target_")) for y in candidates.values()))
    if not match and not (name is not None and "_target_" not in node):  # a preset's leftover: values only
        refuse(f"{key}.{what[0]}", what[1], f"one of deeprob's own: {what[2]}")
    option = candidates[match[0]] if match else candidates[name]
    allowed = set(option) | (_parameters(option["_target_"]) if "_target_" in option else set())
    for k, v in node.items():
        if k in SPECIAL:
            if k != "_target_" and option.get(k) != v:
                refuse(f"{key}.{k}", v, f"{option.get(k)!r}, as conf/{group}/{match[0] if match else name}.yaml has it")
        elif k not in allowed:
            refuse(f"{key}.{k}", v, f"a parameter of {group}={match[0] if match else name}: "
                                    f"{', '.join(sorted(a for a in allowed if a not in SPECIAL))}")
        elif not _plain(v):
            refuse(f"{key}.{k}", v, "a number, string, boolean or list of them")
    return node


def trusted(config, source: str) -> DictConfig:
    """A training config read from disk, as a DictConfig, once every key has passed trusted_option/the settings."""
    raw = OmegaConf.to_container(config, resolve=False) if isinstance(config, (DictConfig, ListConfig)) else config
    refuse = _refuser(source)
    if not isinstance(raw, dict):
        refuse("config", type(raw).__name__, "a mapping of deeprob's settings")
    raw = upgraded(raw)
    settings = _settings()
    for key, node in raw.items():
        if key in SINGLE:
            trusted_option(key, node, source)
        elif key in MULTI:
            if node is None:
                continue
            if not isinstance(node, dict):
                refuse(key, node, f"a mapping of conf/{key}/ options")
            for name, option in node.items():
                trusted_option(key, option, source, name=str(name))
        elif key == "resume":
            if not (node is None or (isinstance(node, str) and _plain(node))):
                refuse(key, node, "null, auto or a run folder")
        elif key in settings:
            if not isinstance(node, dict):
                refuse(key, node, f"a mapping of {key} settings")
            for k, v in node.items():
                if k not in settings[key]:
                    refuse(f"{key}.{k}", v, f"one of {', '.join(settings[key])}")
                if not _plain(v) or isinstance(v, (list, tuple)):
                    refuse(f"{key}.{k}", v, "a number, string or boolean")
        else:
            refuse(key, "...", f"a key of deeprob's config: {', '.join((*SINGLE, *MULTI, *SETTINGS))}")
    cfg = OmegaConf.create(raw)
    for key, node in options(cfg):  # the values' types and ranges, as for a command line
        try:
            check_option(node, key)
        except UserError as e:
            raise UserError(f"{source}: {e}; a run folder holds deeprob's own options only, so it was not opened") \
                from None
    return cfg


def upgraded(raw: dict) -> dict:
    """A config saved before the dataset kinds were classes (`dataset.name: cifar10`) as one saved now
    (`dataset._target_`): the same run, read the same way."""
    dataset = raw.get("dataset")
    kind = LEGACY_DATASETS.get(dataset.get("name")) if isinstance(dataset, dict) else None
    if kind and dataset.get("_target_", kind) == kind:
        return {**raw, "dataset": {"_target_": kind, **{k: v for k, v in dataset.items() if k != "name"}}}
    return raw


def _refuser(source: str):
    def refuse(key, value, allowed):
        shown = repr(value)
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        raise UserError(f"{source}: {key}={shown} is not deeprob's own (expected {allowed}); a run folder is data "
                        f"and may only name deeprob's options, so nothing was run from it")
    return refuse


def data_settings(stored, given=None) -> DictConfig:
    """The dataset to evaluate a run on: the run's option and sample-defining values (subset, val_size, split
    seed, a synthetic set's parameters), the location (root, download, url, md5) from conf/dataset/ and the
    user's command line (`given`), never from the run folder."""
    name, option = next((o, y) for o, y in option_files("dataset").items() if y.get("_target_") == stored.get("_target_"))
    node = OmegaConf.create({k: (option[k] if k in LOCATION else v) for k, v in stored.items()})
    for k, v in (given or {}).items():
        node[k] = v
    if node.get("root") is None and name != "synthetic":
        hint = f" (the run was trained on dataset.root={stored.get('root')!r})" if stored.get("root") else ""
        raise UserError(f"dataset.root: not given; a run folder never chooses where data is read from, so pass "
                        f"dataset.root=PATH holding the {name} data{hint}")
    return node


def check_entries(folder: Path):
    """UserError when a file or folder deeprob writes in `folder` (train.log, checkpoints/, .hydra/, event files)
    is a link or not a plain file/folder: writing through it would change something outside the run folder."""
    folder = Path(folder)
    try:
        names = [n for n in os.listdir(folder) if n in WRITTEN or n.startswith("events.out.tfevents.")]
    except OSError:  # missing or unreadable: making, locking or reading the folder says why it cannot be used
        return
    entries = [folder / n for n in names]
    for sub in ("checkpoints", ".hydra"):
        if (folder / sub).is_dir() and not (folder / sub).is_symlink():
            entries += [folder / sub / n for n in os.listdir(folder / sub)]
    for path in entries:
        mode = os.lstat(path).st_mode
        kind = "a link" if stat.S_ISLNK(mode) else None if stat.S_ISREG(mode) or (
            stat.S_ISDIR(mode) and path.name in ("checkpoints", ".hydra")) else "not a plain file"
        if kind:
            target = f" to {os.readlink(path)!r}" if stat.S_ISLNK(mode) else ""
            raise UserError(f"run folder {folder}: {path.name} is {kind}{target}; deeprob writes there and never "
                            f"through links, so the folder was not opened (replace it with a plain copy)")


def trusted_record(saved: Path) -> Path:
    """A private folder holding a checked copy of a run's .hydra/config.yaml, for Hydra to compose a resumed run
    from: Hydra then reads nothing of the run folder itself (no `defaults:`, `hydra:` or config group files
    placed beside it). Removed when the process ends."""
    import atexit
    import shutil
    import tempfile

    try:
        loaded = OmegaConf.load(saved)
    except Exception as e:
        reason = getattr(e, "strerror", None) or (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise UserError(f"resume: {saved} cannot be read as a run's config ({reason}); pass the folder of a run "
                        f"deeprob made") from None
    cfg = trusted(loaded, str(saved))
    folder = Path(tempfile.mkdtemp(prefix="deeprob-resume-"))
    atexit.register(shutil.rmtree, folder, True)
    OmegaConf.save(cfg, folder / "config.yaml")
    return folder


def resumed_data(cfg) -> DictConfig:
    """cfg.dataset, never downloading when the config came from a run folder (resume=RUN_DIR): the folder's url,
    md5 and root then only say where the run's data is read from, not what is fetched or where it is written."""
    if cfg.get("resume") in (None, "auto"):
        return cfg.dataset
    node = cfg.dataset.copy()
    node.download = False
    return node


def require_cwd(command: str):
    """Exit 2 with one line when the current folder was deleted: importing torch there ends in a native loader
    error (oneMKL 'Cannot load libtorch_cpu.so'), so this runs before torch is imported."""
    import sys

    try:
        os.getcwd()
    except FileNotFoundError:
        sys.exit(report(command, UserError("the current folder no longer exists; cd into an existing folder and run "
                                           "the command again")))
