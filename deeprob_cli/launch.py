"""What `deeprob COMMAND ...` does before its first step, in one file: the command tables, the answers that need
no torch (--help, --cfg job, --info, tab completion), the precheck that composes and validates the command line
the way Hydra will, and the run-folder policy; then Hydra and the command's own module take over.

    deeprob train activation=gelu trainer.epochs=2
      1. main(): `train` is a Hydra command (HYDRA_COMMANDS); a query (--help, --cfg job) is answered here, no torch
      2. prepare(): stop signals taken over (exits.SIGNALS); resume=RUN_DIR composes from that run's saved config
         (resume_args); otherwise precheck() composes the config and checks every value (config.check), so a
         mistake is one line, exit 2 (exits.EXITS), before any folder exists
      3. the run-folder policy: an existing run is only written into to continue it; a fresh folder is made and
         locked (folders.fresh_folder, folders.claim) and handed to Hydra as hydra.run.dir
      4. train.cli() → Hydra → train.main(): the run itself (run.Run), ending through exits.report

Torch-free: `deeprob train --cfg job` answers without importing torch, and from prepare() on a Ctrl-C during
start-up is one line (exits.Stopped) that leaves no folder behind.
"""
import os
import re
import sys
import time
from datetime import datetime
from importlib import import_module
from pathlib import Path

import hydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import OmegaConf

from . import CONFIG_DIR, UserError, __version__
from .config import RESUMABLE_CHANGES, build, check_command, compose_checked, options, require_options
from .exits import SIGNALS, Stopped, ending, report
from .folders import claim, fresh_folder, holds_run, holds_sweep, hydra_value, release_all, shell_quote
from .threads import register as register_run
from .trust import trusted_record

USAGE = """usage: deeprob COMMAND [ARGS]

commands:
  train [overrides]          train one configuration (Hydra: -m for sweeps, --help for every group and option,
                             --cfg job to print the composed config)
  init-stats [overrides]     the lecture's activation statistics of a deep fully connected stack right after
                             init= (same overrides, -m and --cfg as train): a table, stats.json, histograms.png
  eval RUN_DIR [split=...]   evaluate a run's last checkpoint on val or test, write RUN_DIR/eval.json
  compare PATH... [--csv]    table of runs sorted by val accuracy (columns: what differs) + curves PNG
  plot activations [out=F]   every activation and its derivative on one sheet (default activations.png);
                             inside a run's folder also logged to its TensorBoard
  lab CLAIM [overrides]      one claim of the lecture reproduced: its runs, figure.png and verdict.json
                             (lab --list: the claims; lab --all [overrides]: every claim + REPORT.md)

examples:
  deeprob train activation=gelu init=kaiming augment=[flip,crop] regularizer=[l2]
  deeprob train -m activation=relu,tanh,gelu dataset=synthetic
  deeprob init-stats init=normal init.std=0.05 activation=tanh
  deeprob eval runs/2026-11-28/10-00-00 split=test
  deeprob plot activations out=activations.png
  deeprob lab relu_speed dataset=image_folder dataset.root=/tmp/data/cifar10-jpeg
"""


# sub-commands that are Hydra applications: the module whose @hydra.main runs them, and its config in conf/
HYDRA_COMMANDS = {"train": ("train", "train"), "init-stats": ("init_stats", "init_stats")}
# sub-commands with their own argument parsing: the module whose main(args) runs them
PLAIN_COMMANDS = {"eval": "evaluate", "compare": "compare", "plot": "plot", "lab": "lab"}


def main():
    """`deeprob COMMAND ARGS`: the exit code."""
    args = sys.argv[1:]
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        return 0
    if args[0] in ("-V", "--version"):
        print(f"deeprob {__version__}")
        return 0
    if args[0] in ("-sc", "--shell-completion"):  # Hydra's bash completion asks `deeprob -sc query=bash`
        return complete(args)
    command, rest = args[0], args[1:]
    if command in HYDRA_COMMANDS:
        return run_hydra_command(command, rest)
    if command in PLAIN_COMMANDS:
        return run_plain_command(command, rest)
    names = ", ".join([*HYDRA_COMMANDS, *PLAIN_COMMANDS])
    code, line = ending(UserError(f"unknown command {command!r}; choose one of: {names} (deeprob --help)"))
    print(f"deeprob: {line}", file=sys.stderr)
    return code


def run_hydra_command(command: str, rest: list):
    """train, init-stats: a query answered here; otherwise checked and given a run folder, then Hydra runs it."""
    module, config_name = HYDRA_COMMANDS[command]
    if is_query(rest):  # --cfg job, --help, --info: Hydra only prints; answer without importing torch
        return answer(config_name, command, rest)
    if command == "train":
        register_run()  # counted among the live runs from launch on, so that two runs started together share the cores
    try:
        rest = prepare(command, config_name, rest)  # checked, and the run folder's policy, before Hydra writes
    except UserError as e:
        return report(command, e)
    sys.argv = [f"{sys.argv[0]} {command}", *rest]  # Hydra reads argv
    return import_module(f".{module}", __package__).cli()


def run_plain_command(command: str, rest: list):
    """eval, compare, plot, lab: their own --help, or their main(args)."""
    module = import_module(f".{PLAIN_COMMANDS[command]}", __package__)
    if rest and rest[0] in ("-h", "--help"):
        usage = getattr(module, "USAGE", None) or "usage: " + module.__doc__.strip().split("`")[1]
        print(usage + "\n\n" + module.__doc__.strip() if usage not in module.__doc__ else module.__doc__.strip())
        return 0
    return module.main(rest)


# ---------------------------------------------------------------- answers without torch: --help, --cfg, -sc

QUERIES = ("--cfg", "-c", "--hydra-help", "--info", "-i", "-sc", "--shell-completion")
HELP = ("--help", "-h")
MULTI_SELECT = ("augment", "regularizer")


def is_query(args) -> bool:
    """True when Hydra will only print something (config, help, info, completion) and never call the task."""
    return any(a in QUERIES or a in HELP or a.startswith(("--cfg=", "--info=")) for a in args)


def answer(config_name: str, command: str, args):
    """Print deeprob's own --help, or let Hydra answer the query in args; the task itself never runs."""
    if any(a in HELP for a in args):
        print(help_text(config_name, command))
        return 0
    program = sys.argv[0]
    completion = any(a in ("-sc", "--shell-completion") for a in args)
    # completion scripts name the program itself (`deeprob`); the other queries name the command
    sys.argv = [program if completion else f"{program} {command}", *args]

    @hydra.main(config_path=str(CONFIG_DIR), config_name=config_name, version_base="1.3")
    def never_called(cfg):
        raise RuntimeError("deeprob_cli.launch.answer runs only for --cfg/--info/-sc queries")

    return never_called()


def complete(args):
    """`deeprob -sc query=bash`, which Hydra's bash completion calls with COMP_LINE='deeprob COMMAND ...': the
    sub-command's groups, options and keys, or the sub-commands while the first word is being typed."""
    line = os.environ.get("COMP_LINE", "")
    words = line.split()
    if len(words) >= 2 and words[1] in HYDRA_COMMANDS and (len(words) > 2 or line.endswith(" ")):
        os.environ["COMP_LINE"] = " ".join([words[0], *words[2:]]) + (" " if line.endswith(" ") else "")
        return answer(HYDRA_COMMANDS[words[1]][1], words[1], args)
    print(" ".join([*HYDRA_COMMANDS, *PLAIN_COMMANDS]))
    return 0


ABBREVIATION = r"(?<!\bal)(?<!\be\.g)(?<!\bi\.e)(?<!\bcf)(?<!\bvs)"  # not a sentence's end before ". "


def first_sentence(path) -> str:
    """The first sentence of an option's header comment (which may run over several lines)."""
    text = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        if "@package" not in line:
            text.append(line.lstrip("# ").strip())
    joined = " ".join(text)
    end = re.search(ABBREVIATION + r"\.\s", joined)  # "He et al. 2016" does not end a sentence
    joined = joined if end is None else joined[:end.start() + 1]
    return joined if len(joined) <= 150 else joined[:joined.rfind(" ", 0, 148)] + " …"


def help_text(config_name: str, command: str) -> str:
    """Usage, each config group's options with their descriptions (default marked), the settings with their
    comments from conf/<config_name>.yaml; Hydra's internals stay behind --hydra-help."""
    raw = (CONFIG_DIR / f"{config_name}.yaml").read_text().splitlines()
    defaults = {}
    for entry in OmegaConf.load(CONFIG_DIR / f"{config_name}.yaml").get("defaults", []):
        if isinstance(entry, (dict,)) or OmegaConf.is_dict(entry):
            for key, value in entry.items():
                defaults[str(key).replace("optional ", "")] = value
    lines = [f"usage: deeprob {command} [group=option ...] [key=value ...] [-m] [--cfg job] [--info] "
             f"[-sc install=bash]", "",
             "Options: one word per group (group=option); each is conf/<group>/<option>.yaml, and group.key=value",
             "overrides its parameters."]
    if any(group in defaults for group in MULTI_SELECT):
        lines.append("Multi-select groups take a list: augment=[flip,crop], augment=flip, augment=none.")
    for group, default in defaults.items():
        if not (CONFIG_DIR / group).is_dir():
            continue
        chosen = default if isinstance(default, str) or default is None else list(default)
        multi = " (multi-select)" if group in MULTI_SELECT else ""
        lines += ["", f"{group}{multi}  [default: {chosen if chosen is not None else 'none'}]"]
        for option in sorted((CONFIG_DIR / group).glob("*.yaml")):
            lines.append(f"  {option.stem:<18}{first_sentence(option)}")
    lines += ["", f"Settings (key=value), as in conf/{config_name}.yaml:"]
    block = False
    for line in raw:
        top = line and not line.startswith((" ", "#"))
        if top:
            block = not line.startswith(("defaults:", "hydra:"))
        if block and line.strip():
            lines.append("  " + line)
    lines += ["", "Sweeps: -m with comma-separated values (activation=relu,tanh); --cfg job prints the composed config;",
              "--hydra-help shows Hydra's own flags; tab completion: eval \"$(deeprob train -sc install=bash)\"."]
    return "\n".join(lines)


# ---------------------------------------------------------------- before Hydra: the checks and the run folder

def prepare(command: str, config_name: str, args: list) -> list:
    """The arguments to hand Hydra, after the checks that must come before it writes anything: the command line
    composed and validated (a mistake is one line, exit 2, no folder), the run-folder policy (an existing run is
    never written into except to continue it: resume=RUN_DIR, or resume=auto on an unfinished run), and, for
    `train`, the stop signals taken over and the run folder claimed: pinned to a folder of its own (the default
    pattern gets a -1, -2, ... suffix when two runs start in the same second) and locked, so that a second
    process on it is refused before Hydra writes its .hydra/ there."""
    if command != "train":
        return _prepare(command, config_name, args)
    SIGNALS.install()
    try:
        return _prepare(command, config_name, args)
    except Stopped as e:
        release_all(discard_created=True)
        SIGNALS.uninstall()
        raise SystemExit(report(command, e)) from None
    except BaseException:
        release_all(discard_created=True)
        SIGNALS.uninstall()
        raise


def _prepare(command: str, config_name: str, args: list) -> list:
    resume, run_dir, sweep_dir = _value(args, "resume"), _value(args, "hydra.run.dir"), _value(args, "hydra.sweep.dir")
    multirun = any(a in ("-m", "--multirun") for a in args)
    for key, value in (("hydra.run.dir", run_dir), ("hydra.sweep.dir", sweep_dir)):
        if value is not None and "${" not in value:  # quoted for Hydra: spaces and non-ASCII characters pass
            args = _with(args, key, value)
    if resume not in (None, "null", "auto"):
        return resume_args(command, args, Path(resume))  # checked against the checkpoint's own config when the run opens
    precheck(args, config_name)
    if not multirun and run_dir is not None and holds_run(Path(run_dir)):
        if resume != "auto":
            raise UserError(f"hydra.run.dir: {run_dir} already holds a run; choose another folder"
                            + (f" (or continue it: deeprob train resume={shell_quote(run_dir)})" if command == "train"
                               else ""))
        args = [*args, "hydra.output_subdir=null"]  # continue it, keeping the run's own .hydra/ record
    if multirun and sweep_dir is not None and holds_sweep(Path(sweep_dir)):
        if resume != "auto":
            raise UserError(f"hydra.sweep.dir: {sweep_dir} already holds a sweep's runs; choose another folder (or "
                            f"continue its unfinished jobs, skipping the completed ones: add resume=auto)")
        # a job folder that already holds a run keeps its own .hydra/ record (Hydra writes it before train runs)
        args = [*args, "hydra.output_subdir='${deeprob_record:${hydra.runtime.output_dir}}'"]
    if command != "train" or _launched():
        return args  # init-stats keeps its own folder rules; under torchrun rank 0's clock names the folder
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    given = sweep_dir if multirun else run_dir
    if given is not None and "${" in given:
        return args  # a pattern of the user's own: Hydra fills it in
    if given is None:
        folder, created = fresh_folder(_pattern(config_name, "sweep" if multirun else "run"))
        claim(folder, created, pinned=True)
    else:
        folder = Path(given)
        claim(folder, pinned=True)
    return _with(args, key, str(folder))


def precheck(args, config_name: str = "train"):
    """Compose and check what `deeprob COMMAND ARGS` will run (a sweep: its first job), before Hydra starts."""
    cfg = compose_checked(config_name, first_job(args))
    if cfg is None:
        return
    check_command(config_name, cfg)
    build(cfg.activation, "activation", _partial_=False)  # the data-free components' own checks
    for key, node in options(cfg):
        if key.startswith(("augment.", "regularizer.", "tta")):
            build(node, key)


def first_job(args) -> list:
    """The overrides of the command line's first job (a sweep's first value of each swept key); every option
    named anywhere in the sweep must exist."""
    lines = [a for a in args if ("=" in a or a.startswith("~")) and not a.startswith("-")]  # ~key: a deletion
    try:
        overrides = OverridesParser.create().parse_overrides(lines)
    except HydraException as e:
        raise UserError(f"cannot read the overrides: {str(e).strip().splitlines()[0]}") from None
    first = []
    for o in overrides:
        key = o.get_key_element().lstrip("+~")
        if o.is_sweep_override():
            try:
                values = list(o.sweep_string_iterator())
            except HydraException:  # interval()/tag(): a search space for a sweeper, not values
                continue
            first.append(f"{o.get_key_element()}={values[0]}")
        else:
            values = [o.value()]
            first.append(o.input_line)
        if (CONFIG_DIR / key).is_dir():
            for value in values:
                names = value if isinstance(value, list) else str(value).strip("[]").split(",")
                require_options(key, [str(n).strip() for n in names if str(n).strip()])
    return first


def _launched() -> bool:
    """Under torchrun, or in a Slurm step of several tasks (srun --ntasks=N): then each process is a DDP rank,
    rank 0's clock names the one run folder and no rank claims it here."""
    if "SLURM_STEP_ID" in os.environ and "SLURM_PROCID" in os.environ:
        from . import distributed  # (imports torch: only inside a Slurm step)

        distributed.from_slurm()  # sets torchrun's variables from Slurm's when the step has several tasks
    return all(name in os.environ for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"))


def _pattern(config_name: str, mode: str) -> str:
    """conf/<config>.yaml's hydra.<mode>.dir with ${now:FORMAT} filled in from this moment."""
    pattern = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / f"{config_name}.yaml").hydra, resolve=False)[mode]["dir"]
    now = datetime.fromtimestamp(time.time())
    return re.sub(r"\$\{now:([^}]*)\}", lambda m: now.strftime(m.group(1)), pattern)


def _value(args: list, key: str):
    """The value of override `key=...` on the command line (Hydra's quoting removed), or None."""
    line = next((a for a in args if a.startswith(f"{key}=")), None)
    if line is None:
        return None
    raw = line.split("=", 1)[1]
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        raw = raw[1:-1].replace(f"\\{raw[0]}", raw[0]).replace("\\\\", "\\")
    return raw


def _with(args: list, key: str, value: str) -> list:
    """args with `key=value` (quoted for Hydra) in place of the user's, before the first override (Hydra takes
    the overrides as one contiguous run)."""
    args = [a for a in args if not a.startswith(f"{key}=")]
    first = next((i for i, a in enumerate(args) if "=" in a and not a.startswith("-")), len(args))
    return [*args[:first], f"{key}={hydra_value(value)}", *args[first:]]


def _saved_choices(run: Path) -> dict:
    """{group: option} the run was composed with (its .hydra/hydra.yaml), lists as "a,b"."""
    try:
        choices = OmegaConf.to_container(OmegaConf.load(run / ".hydra" / "hydra.yaml").hydra.runtime.choices)
    except Exception:
        return {}
    return {k: ",".join(map(str, v)) if isinstance(v, list) else str(v) for k, v in choices.items()}


def resume_args(command: str, args: list, run: Path) -> list:
    """`resume=RUN_DIR`: compose from that run's saved config, write into its folder (claimed), leave its .hydra/
    as it is. A group choice (`model=mlp`) is refused here: a resumed run keeps its configuration."""
    saved = run / ".hydra" / "config.yaml"
    try:
        is_run = saved.is_file()
    except OSError:
        is_run = False
    if not is_run:
        raise UserError(f"resume: {run} is not a run folder (no .hydra/config.yaml); pass the folder of the run "
                        f"to continue")
    chosen = _saved_choices(run)
    for line in list(args):
        key = line.split("=", 1)[0].lstrip("+~")
        if "=" in line and not line.startswith("-") and (CONFIG_DIR / key).is_dir():
            if _value(args, key).strip("[]").replace(" ", "") == chosen.get(key):
                args = [a for a in args if a != line]  # the run's own choice: nothing changes
                continue
            raise UserError(f"resume: {line} chooses another option; a resumed run keeps its configuration (it may "
                            f"change: {', '.join(sorted(RESUMABLE_CHANGES))}); start a new run to change it")
    if any(a in ("-m", "--multirun") for a in args):
        raise UserError("resume: continues one run; to continue a sweep's unfinished jobs run the sweep again with "
                        "hydra.sweep.dir=SWEEP_DIR resume=auto")
    record = trusted_record(saved)  # a run folder is data: Hydra composes a checked copy, never the folder's files
    if command == "train" and not _launched():
        claim(run, pinned=True)
    args = _with(_with(args, "resume", str(run)), "hydra.run.dir", str(run))
    return [f"--config-dir={record}", "--config-name=config", "hydra.output_subdir=null", *args]
