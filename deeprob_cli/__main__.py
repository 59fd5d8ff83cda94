"""`deeprob` command: everything before Hydra lives in deeprob_cli.launch (`deeprob --help` lists the commands)."""
import sys

from .launch import main

if __name__ == "__main__":
    sys.exit(main())
