"""deeprob: experiment runner for the 'Training Neural Networks' lecture. Start with `deeprob --help`."""

import time
from pathlib import Path

LAUNCHED = time.time()  # when `deeprob` started (this package is its first import): summary.json's startup_seconds

from .threads import passive_wait

passive_wait()  # OpenMP's wait policy is read when torch loads its runtime: set it before anything imports torch

__version__ = "0.1.0"

# conf/ at the top of a checkout (editable install); a wheel carries it inside the package as deeprob_cli/conf
CONFIG_DIR = Path(__file__).resolve().parent.parent / "conf"
if not CONFIG_DIR.is_dir():
    CONFIG_DIR = Path(__file__).resolve().parent / "conf"


class UserError(Exception):
    """A mistake in what the user asked for (config, paths, data): reported as one line, exit code 2."""


def _register_resolvers():
    from .naming import register

    register()


_register_resolvers()  # ${deeprob_job:...} in conf/train.yaml names sweep jobs
