"""Configuration checks and component building, shared by `deeprob train`, `deeprob init-stats` and `deeprob eval`.

What the user types is declared once and checked by deeprob_cli.validate: the settings outside the option groups
here (SETTINGS for train, INIT_STATS_SETTINGS, EVAL_SETTINGS), every option's parameters (the dataset kinds'
included) in its `_target_`'s signature. `check(cfg)` validates every value and the cross-group rules;
`build(cfg.<group>)` instantiates an option's `_target_` after the same check. launch.precheck runs them before
Hydra creates a run folder; `compose_checked` composes a config the way Hydra will.
"""

from functools import lru_cache

from hydra.errors import InstantiationException
from hydra.utils import get_class, get_object, instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from . import CONFIG_DIR, UserError
from .validate import Choice, Kind, ListOf, Range, check_params, check_value

# the settings outside the option groups, each declared once: key → allowed values
SETTINGS = {
    "trainer.epochs": Range(1, integer=True),
    "trainer.batch_size": Range(1, integer=True),
    "trainer.eval_batch_size": Range(1, integer=True),
    "trainer.seed": Range(0, 2 ** 32 - 1, integer=True),  # numpy.random.seed's range (torch's is wider)
    "trainer.threads": Range(1, integer=True, nullable=True),
    "trainer.checkpoint_every": Range(0, integer=True),
    "trainer.sync_bn": Kind(bool),
    "trainer.precision": Choice("auto", "bf16", "fp32"),
    "trainer.channels_last": Choice("auto", True, False),
    "trainer.compile": Kind(bool),
    "resume": Kind(str, nullable=True),
    "log.hist_every": Range(0, integer=True),
    "log.progress": Choice("auto", True, False),
    "optim.lr": Range(0, 3.4e38, low_open=True),  # the optimizers compute in float32
}
# deeprob init-stats' own settings (conf/init_stats.yaml)
INIT_STATS_SETTINGS = {
    "init_stats.dims": ListOf(Range(1, integer=True), least=2,
                              what="a list of ≥ 2 positive integers (input width, then each layer's width), e.g. "
                                   "init_stats.dims=[512,512,512]"),
    "init_stats.batch": Range(1, integer=True),
    "trainer.seed": SETTINGS["trainer.seed"],
}
# `deeprob eval RUN_DIR key=value ...`: the keys it takes (trainer.device: check_device)
EVAL_SETTINGS = {
    "split": Choice("val", "test"),
    "tta": Choice(*sorted(p.stem for p in (CONFIG_DIR / "tta").glob("*.yaml"))),
    "dataset.root": Kind(str),
    "dataset.download": Kind(bool),
    "dataset.url": Kind(str),
    "dataset.md5": Kind(str),
    "trainer.device": Kind(str),
    "trainer.eval_batch_size": SETTINGS["trainer.eval_batch_size"],
}
# runs saved before the dataset kinds were classes name theirs with `name:` (trust.trusted reads them as these)
LEGACY_DATASETS = {"cifar10": "deeprob_cli.datasets.cifar10.CIFAR10",
                   "image_folder": "deeprob_cli.datasets.image_folder.ImageFolder",
                   "synthetic": "deeprob_cli.datasets.synthetic.Synthetic"}
DEVICES = "auto, cpu or cuda"
# a setting's advice when its value is refused, where "expected ..." alone does not say what it means
HINTS = {"trainer.checkpoint_every": " (0 = at epoch ends only)", "log.hist_every": " (0 = no histograms)"}

# keys a resumed run may change; summary.json's changed_on_resume lists the ones a resume changed. The training
# itself stays bit-identical under each; trainer.device (another device computes differently) and
# trainer.eval_batch_size (validation sums batch by batch) may move the last bits of the numbers after the resume.
# trainer.threads is not among them: torch's CPU reductions split work by thread count.
RESUMABLE_CHANGES = {"resume", "trainer.device", "trainer.eval_batch_size", "log.progress", "log.hist_every"}

# why a key that looks harmless may still not change on resume
NOT_RESUMABLE_BECAUSE = {
    "trainer.threads": "torch splits its CPU reductions by thread count, so the result would no longer be "
                       "bit-identical to an uninterrupted run",
}


def changed(key: str, value, saved) -> str:
    because = f" ({NOT_RESUMABLE_BECAUSE[key]})" if key in NOT_RESUMABLE_BECAUSE else ""
    return (f"resume: {key}={value!r} differs from the run's {saved!r}{because}; a resumed run keeps its "
            f"configuration (it may change: {', '.join(sorted(RESUMABLE_CHANGES))}); start a new run to change it")


def check_command(config_name: str, cfg: DictConfig):
    """The checks of conf/<config_name>.yaml's command: `check` for train, `check_init_stats` for init-stats."""
    (check_init_stats if config_name == "init_stats" else check)(cfg)


def check_settings(cfg: DictConfig, settings: dict):
    """Raise UserError naming the first declared setting whose value is out of its range or of the wrong type."""
    for key, spec in settings.items():
        if OmegaConf.select(cfg, key, default="<absent>") != "<absent>":
            try:
                check_value(key, OmegaConf.select(cfg, key), spec)
            except ValueError as e:
                raise UserError(f"{e}{HINTS.get(key, '')}") from None


def check(cfg: DictConfig):
    """Raise UserError naming the first key whose value is out of its range or of the wrong type."""
    check_targets(cfg)  # an option is chosen by name: a `_target_` of one's own is refused
    check_settings(cfg, SETTINGS)
    check_device(cfg.trainer.device)
    for group in ("augment", "regularizer"):
        node = cfg.get(group)
        if not (node is None or isinstance(node, DictConfig)):
            raise UserError(f"{group}: {node!r} is not allowed; expected a list of options, e.g. {group}=[a,b], a "
                            f"single option or {group}=none")
    for key, node in options(cfg):
        check_option(node, key)
    check_fits(cfg)
    build(cfg.dataset, "dataset").check(*smallest_image(cfg))  # what the dataset kind can refuse before reading


def check_init_stats(cfg: DictConfig):
    """`deeprob init-stats`: its settings, the activation's and init's parameters, and what the init needs."""
    check_settings(cfg, INIT_STATS_SETTINGS)
    for key, node in (("activation", cfg.activation), ("init", cfg.init)):
        check_option(node, key)
    needs = getattr(get_object(cfg.init._target_), "needs", None)
    unmet = needs(cfg.init) if needs else None
    if unmet:  # init-stats' stack is Linear → activation layers only: it provides nothing an init may need
        raise UserError(f"init={cfg.init._target_.rsplit('.', 1)[-1]}: {unmet[1]}, and the init-stats stack "
                        f"(Linear → activation layers) has none; measure it with deeprob train instead")


def smallest_image(cfg: DictConfig):
    """(the smallest image side the chosen options can work with, the option that needs it)."""
    needs = [(1, "")]
    crop = selected(cfg, "augment").get("crop")
    if crop is not None and crop.get("mode", "reflect") == "reflect":  # reflect padding needs padding < side
        needs.append((crop.get("padding", 0) + 1, f"augment.crop (padding {crop.get('padding', 0)})"))
    shift = cfg.get("tta", {}).get("shift") if isinstance(cfg.get("tta"), DictConfig) else None
    if isinstance(shift, int) and not isinstance(shift, bool):  # flip_translate: a shift beyond the side is no view
        needs.append((shift + 1, f"tta.shift ({shift})"))
    return max(needs, key=lambda need: need[0])


def check_device(name):
    """trainer.device: auto, cpu, cuda or cuda:N, and CUDA only where this machine has it."""
    device = str(name)
    if not (device in ("auto", "cpu", "cuda") or device.startswith("cuda:")):
        raise UserError(f"trainer.device: {name!r} is not allowed; expected {DEVICES}")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise UserError(f"trainer.device: {device!r} asked for, but this machine has no CUDA device; "
                            f"use trainer.device=auto or cpu")


def options(cfg: DictConfig):
    """(key, config node) of every chosen option: single groups (`init`) and multi-select ones (`augment.flip`)."""
    for group in ("dataset", "model", "activation", "init", "preprocess", "tta", "optim", "schedule", "average"):
        node = cfg.get(group)
        if isinstance(node, DictConfig) and "_target_" in node:
            yield group, node
    for group in ("augment", "regularizer"):
        for name, node in selected(cfg, group).items():
            yield f"{group}.{name}", node


def check_option(node, key: str):
    """An option's parameters against the signature of its `_target_` (types and declared ranges)."""
    params = {k: v for k, v in node.items() if not str(k).startswith("_")}
    try:
        check_params(get_object(node._target_), params)
    except ValueError as e:
        raise UserError(prefixed(key, str(e))) from None
    except Exception:  # a target that cannot be imported: instantiate() reports it
        return


def prefixed(key: str, message: str) -> str:
    """A component's short error ("p: ...") as the user's key ("regularizer.dropout.p: ...")."""
    if message.startswith(key):
        return message
    head = message.split(":", 1)[0]
    if head.isidentifier():
        return f"{key}.{message}"
    return f"{key}: {message}"


def check_fits(cfg: DictConfig):
    """The cross-group rules, in one place: what preprocessing and each regularizer need from the model, as the
    classes declare it (`needs`/`provides` on the regularizer, preprocess and model classes)."""
    model_cls, model_name = get_class(cfg.model._target_), cfg.model._target_.rsplit(".", 1)[-1].lower()
    provides = model_cls.provides(cfg.model)
    preprocess = get_class(cfg.preprocess._target_)
    if not getattr(preprocess, "keeps_layout", True) and "flat_input" not in provides:
        raise UserError(f"preprocess: {preprocess.__name__.lower()} gives component coordinates, not an image, so "
                        f"model={model_name} cannot use it; use model=mlp, or preprocess=whiten "
                        f"(decorrelates and keeps the pixel layout)")
    chosen = [(f"regularizer={name}", node) for name, node in selected(cfg, "regularizer").items()]
    init = cfg.get("init")
    if isinstance(init, DictConfig) and "_target_" in init:
        chosen.append((f"init={init._target_.rsplit('.', 1)[-1]}", init))
    optim = cfg.get("optim")  # optim=muon needs weights of its shape
    if isinstance(optim, DictConfig) and "_target_" in optim:
        chosen.append((f"optim={optim._target_.rsplit('.', 1)[-1].lower()}", optim))
    for label, node in chosen:
        target = get_object(node._target_)
        needs = target.needs(node) if hasattr(target, "needs") else None
        if needs and needs[0] not in provides:
            raise UserError(f"{label}: {needs[1]} and model {model_cls.__name__} has none"
                            f"{' (model.norm=' + str(cfg.model.get('norm')) + ')' if 'norm' in cfg.model else ''}; "
                            f"{needs[2]}")


def compose_checked(config_name: str, overrides: list):
    """The composed config (without Hydra's node), or None where Hydra's own settings are at fault (Hydra
    reports those itself); a missing key is one line listing the keys that exist."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException

    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=overrides)
    except HydraException as e:
        message = str(e).strip().splitlines()[0]
        if "hydra" in message:
            return None
        missing = next((line.split("'")[1] for line in str(e).splitlines() if line.startswith("Could not override")),
                       None)
        if missing:
            parent = missing.rsplit(".", 1)[0] if "." in missing else ""
            with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
                base = compose(config_name=config_name, overrides=[f for f in overrides
                                                                   if not f.startswith(f"{missing}=")])
            node = OmegaConf.select(base, parent) if parent else base
            keys = ", ".join(k for k in node.keys() if not str(k).startswith("_")) if isinstance(node, DictConfig) else ""
            raise UserError(f"{missing}: no such key" + (f"; {parent or 'the config'} has: {keys}" if keys else "")
                            + f" (add a new key with +{missing}=...)") from None
        raise UserError(message) from None
    return cfg


@lru_cache(maxsize=None)
def option_files(group: str) -> dict:
    """{option name: its YAML as a plain dict} of conf/<group>/."""
    return {p.stem: OmegaConf.to_container(OmegaConf.load(p), resolve=False) or {}
            for p in sorted((CONFIG_DIR / group).glob("*.yaml"))}


def check_targets(cfg: DictConfig):
    """A command line's `_target_` (preprocess._target_=os.system) is deeprob's own option's or refused in one line:
    the options are chosen by name (preprocess=whiten), never by a callable's path."""
    for key, node in options(cfg):
        group, _, name = key.partition(".")
        files = option_files(group)
        allowed = {files[name].get("_target_")} if name in files else {y.get("_target_") for y in files.values()}
        if node.get("_target_") not in allowed:
            choose = f"{group}=[{name}]" if name else f"{group}={next(iter(files))}"
            raise UserError(f"{key}._target_: {node.get('_target_')!r} is not one of deeprob's own options; choose an "
                            f"option by name instead (e.g. {choose}; see conf/{group}/)")


def option_names(group: str) -> list:
    """The options of a config group: the YAML files in conf/<group>/, sorted."""
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


def require_options(group: str, names):
    options_ = option_names(group)
    for name in names:
        if name not in options_:
            raise UserError(f"{group}={name}: no such option; choose from {', '.join(options_)}")


def selected(cfg: DictConfig, group: str) -> dict:
    """The options chosen in a multi-select group, in command-line order: {name: option config}."""
    node = cfg.get(group)
    # an experiment preset may tune an option (augment.crop.padding) that the command line then deselects
    # (augment=[flip]): such a leftover has no _target_ and is not a selection
    return {} if node is None else {k: v for k, v in node.items() if not isinstance(v, DictConfig) or "_target_" in v}


def build(node, key: str, **kwargs):
    """instantiate(node, **kwargs) after checking its parameters; a bad one is one line naming `key.param`."""
    if isinstance(node, DictConfig) and "_target_" in node:
        check_option(node, key)
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as e:
        cause = e.__cause__ or e
        message = str(cause).strip().splitlines()[-1] if str(cause).strip() else type(cause).__name__
        raise UserError(prefixed(key, message)) from None


def flatten(node: dict, prefix: str = "") -> dict:
    """A nested dict as {"a.b.c": value}."""
    out = {}
    for key, value in node.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def to_plain(node):
    """A DictConfig/ListConfig as plain Python containers (checkpoint- and JSON-safe)."""
    if isinstance(node, (DictConfig, ListConfig)):
        return OmegaConf.to_container(node, resolve=True)
    return node
