"""Hydra's read-only answers without importing torch: `deeprob train --cfg job` (also --help, --info, --resolve).

Printing the composed configuration needs only Hydra; train.py's imports (torch, torchvision) cost seconds,
so __main__.py routes these queries here (`deeprob train experiment=fast --cfg job` answers at once).
"""

import hydra

from . import CONFIG_DIR  # torch-free

QUERIES = ("--cfg", "-c", "--help", "-h", "--hydra-help", "--info", "-i")


def is_query(args) -> bool:
    """True when Hydra will only print something (config, help, info) and never call the task."""
    return any(a in QUERIES or a.startswith(("--cfg=", "--info=")) for a in args)


@hydra.main(config_path=str(CONFIG_DIR), config_name="train", version_base="1.3")
def main(cfg):
    """Never called: Hydra answers the query and returns before running the task."""
    raise RuntimeError("deeprob_cli.show runs only for --cfg/--help/--info queries")
