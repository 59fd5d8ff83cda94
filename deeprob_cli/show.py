"""Hydra's read-only answers without importing torch: `deeprob train --cfg job` (also --help, --info, --resolve).

Printing the composed configuration needs only Hydra; the training modules' imports (torch, torchvision) cost
seconds, so __main__.py routes these queries here (`deeprob train experiment=fast --cfg job` answers at once).
"""

import hydra

from . import CONFIG_DIR  # torch-free

QUERIES = ("--cfg", "-c", "--help", "-h", "--hydra-help", "--info", "-i")


def is_query(args) -> bool:
    """True when Hydra will only print something (config, help, info) and never call the task."""
    return any(a in QUERIES or a.startswith(("--cfg=", "--info=")) for a in args)


def answer(config_name: str):
    """Let Hydra answer the query in sys.argv for conf/<config_name>.yaml; the task itself never runs."""

    @hydra.main(config_path=str(CONFIG_DIR), config_name=config_name, version_base="1.3")
    def never_called(cfg):
        raise RuntimeError("deeprob_cli.show runs only for --cfg/--help/--info queries")

    return never_called()
