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


# sub-commands run through train.py's one Hydra entry point, with the task override they add
HYDRA_COMMANDS = {"train": None, "init-stats": "task=init_stats"}
# sub-commands with their own argument parsing: the module whose main(args) runs them
PLAIN_COMMANDS = {"eval": "evaluate", "compare": "compare", "plot": "plot", "lab": "lab"}


def main():
    args = sys.argv[1:]
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        return 0
    command, rest = args[0], args[1:]
    if command in HYDRA_COMMANDS:
        refuse_existing_run_dir(rest)
        task = HYDRA_COMMANDS[command]
        rest = with_override(task, rest) if task else rest
        from .show import is_query

        if not is_query(rest) and not any(
                a.startswith("resume=") and a not in ("resume=auto", "resume=null") for a in rest):
            from . import UserError
            from .config import precheck

            try:
                precheck(rest)  # a mistake is one line and exit code 2, before Hydra creates a run folder
            except UserError as e:
                print(f"deeprob {command}: error: {e}", file=sys.stderr)
                return 2
        sys.argv = [f"{sys.argv[0]} {command}", *(resume_args(rest) if command == "train" else rest)]  # Hydra reads argv
        if is_query(rest):  # --cfg job, --help, --info: Hydra only prints; answer without importing torch
            from .show import main as hydra_main
        else:
            from . import distributed
            from .train import main as hydra_main

            if command == "train":
                distributed.setup()  # under torchrun: process group, one run folder for all ranks
        return hydra_main()
    if command in PLAIN_COMMANDS:
        from importlib import import_module

        return import_module(f".{PLAIN_COMMANDS[command]}", __package__).main(rest)
    names = ", ".join([*HYDRA_COMMANDS, *PLAIN_COMMANDS])
    print(f"deeprob: error: unknown command {command!r}; choose one of: {names} (deeprob --help)", file=sys.stderr)
    return 2


def with_override(override: str, args):
    """args with override placed just before the user's first override: Hydra's argparse takes the overrides as
    one contiguous run (`-m a=1 --cfg job b=2` is refused), so it must join theirs, not start or end the line."""
    first = next((i for i, a in enumerate(args) if "=" in a and not a.startswith("-")), 0)
    return [*args[:first], override, *args[first:]]


def resume_args(args):
    """`resume=RUN_DIR`: compose from that run's saved config, write into its folder, leave its .hydra/ as it is."""
    from pathlib import Path

    run = next((a.split("=", 1)[1] for a in args if a.startswith("resume=")), None)
    if run in (None, "auto", "null"):
        return args
    saved = Path(run) / ".hydra" / "config.yaml"
    if not saved.is_file():
        print(f"deeprob train: error: resume: {run} is not a run folder (no .hydra/config.yaml); pass the folder of "
              f"the run to continue", file=sys.stderr)
        sys.exit(2)
    return [f"--config-dir={saved.parent.resolve()}", "--config-name=config", f"hydra.run.dir={run}",
            "hydra.output_subdir=null", *args]


def refuse_existing_run_dir(args):
    """hydra.run.dir=PATH on a folder that already holds a run would overwrite its .hydra/: refuse before Hydra starts."""
    from pathlib import Path

    for arg in args:
        if arg.startswith("hydra.run.dir=") and not any(a.startswith("resume=") for a in args):
            path = Path(arg.split("=", 1)[1])
            if any((path / name).exists() for name in ("summary.json", "checkpoints", "stats.json")):
                print(f"deeprob: error: hydra.run.dir: {path} already holds a run; choose another folder",
                      file=sys.stderr)
                sys.exit(2)


if __name__ == "__main__":
    sys.exit(main())
