"""Answers that need no torch: `deeprob train --help`, `--cfg job`, `--info`, `-sc install=bash` (also init-stats).

    deeprob train --help          # every group and option with its one-line description, then the settings
    deeprob train --cfg job activation=tanh
    eval "$(deeprob train -sc install=bash)"      # Hydra's tab completion of groups, options and keys

Printing the composed configuration needs only Hydra; the training modules' imports (torch, torchvision) cost
seconds, so __main__.py routes these queries here and `deeprob train experiment=fast --cfg job` answers at once.
"""
import os
import re
import sys

import hydra
from omegaconf import OmegaConf

from . import CONFIG_DIR  # torch-free

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
        raise RuntimeError("deeprob_cli.show runs only for --cfg/--info/-sc queries")

    return never_called()


def complete(args):
    """`deeprob -sc query=bash`, which Hydra's bash completion calls with COMP_LINE='deeprob COMMAND ...': the
    sub-command's groups, options and keys, or the sub-commands while the first word is being typed."""
    from .__main__ import HYDRA_COMMANDS, PLAIN_COMMANDS

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
