"""`deeprob` command: a tiny dispatcher. `deeprob train ...` hands the rest of the line to Hydra."""
import sys

USAGE = """usage: deeprob COMMAND [ARGS]

commands:
  train [overrides]          train one configuration (Hydra: -m for sweeps, --help for every group and option,
                             --cfg job to print the composed config)
  eval RUN_DIR [split=...]   evaluate a run's last checkpoint on val or test, write RUN_DIR/eval.json
  plot activations [out=F]   every activation and its derivative on one sheet (default activations.png);
                             inside a run's folder also logged to its TensorBoard

examples:
  deeprob train activation=gelu init=kaiming augment=[flip,crop] regularizer=[l2]
  deeprob train -m activation=relu,tanh,gelu dataset=synthetic
  deeprob eval runs/2026-11-28/10-00-00 split=test
  deeprob plot activations out=activations.png
"""


def main():
    args = sys.argv[1:]
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        return 0
    command, rest = args[0], args[1:]
    if command == "train":
        refuse_existing_run_dir(rest)
        sys.argv = [f"{sys.argv[0]} train", *rest]  # Hydra parses sys.argv
        from .train import main as train_main

        return train_main()
    if command == "eval":
        from .evaluate import main as eval_main

        return eval_main(rest)
    if command == "plot":
        from .plot import main as plot_main

        return plot_main(rest)
    print(f"deeprob: error: unknown command {command!r}; choose one of: train, eval, plot (deeprob --help)", file=sys.stderr)
    return 2


def refuse_existing_run_dir(args):
    """hydra.run.dir=PATH on a folder that already holds a run would overwrite its .hydra/: refuse before Hydra starts."""
    from pathlib import Path

    for arg in args:
        if arg.startswith("hydra.run.dir="):
            path = Path(arg.split("=", 1)[1])
            if (path / "summary.json").exists() or (path / "checkpoints").exists():
                print(f"deeprob train: error: hydra.run.dir: {path} already holds a run; choose another folder",
                      file=sys.stderr)
                sys.exit(2)


if __name__ == "__main__":
    sys.exit(main())
