"""`deeprob` command: a tiny dispatcher. `deeprob train ...` hands the rest of the line to Hydra."""
import sys

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
    from importlib import import_module

    args = sys.argv[1:]
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        return 0
    if args[0] in ("-V", "--version"):
        from . import __version__

        print(f"deeprob {__version__}")
        return 0
    if args[0] in ("-sc", "--shell-completion"):  # Hydra's bash completion asks `deeprob -sc query=bash`
        from .show import complete

        return complete(args)
    command, rest = args[0], args[1:]
    if command in HYDRA_COMMANDS:
        module, config_name = HYDRA_COMMANDS[command]
        from .show import is_query

        if is_query(rest):  # --cfg job, --help, --info: Hydra only prints; answer without importing torch
            from .show import answer

            return answer(config_name, command, rest)
        from . import UserError
        from .run import prepare
        from .threads import register

        if command == "train":
            register()  # counted among the live runs from launch on, so that two runs started together share the cores

        try:
            rest = prepare(command, config_name, rest)  # checked, and the run folder's policy, before Hydra writes
        except UserError as e:
            print(f"deeprob {command}: error: {e}", file=sys.stderr)
            return 2
        sys.argv = [f"{sys.argv[0]} {command}", *rest]  # Hydra reads argv
        return import_module(f".{module}", __package__).cli()
    if command in PLAIN_COMMANDS:
        if rest and rest[0] in ("-h", "--help"):
            module = import_module(f".{PLAIN_COMMANDS[command]}", __package__)
            usage = getattr(module, "USAGE", None) or "usage: " + module.__doc__.strip().split("`")[1]
            print(usage + "\n\n" + module.__doc__.strip() if usage not in module.__doc__ else module.__doc__.strip())
            return 0
        return import_module(f".{PLAIN_COMMANDS[command]}", __package__).main(rest)
    names = ", ".join([*HYDRA_COMMANDS, *PLAIN_COMMANDS])
    print(f"deeprob: error: unknown command {command!r}; choose one of: {names} (deeprob --help)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
