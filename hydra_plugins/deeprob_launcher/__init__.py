"""deeprob's Slurm launcher as a Hydra plugin: `deeprob train -m ... hydra/launcher=slurm`.

Hydra instantiates launchers only from the hydra_plugins namespace and finds their configs in its ConfigStore, so
this module names the launcher and registers its config (hydra-submitit-launcher's submitit_slurm, every key of
it, with deeprob's defaults below). The code lives in deeprob_cli/sweep.py. Hydra imports this module at every
start-up: it must stay cheap (no torch, no submitit)."""
from dataclasses import dataclass

from hydra.core.config_store import ConfigStore
from hydra_plugins.hydra_submitit_launcher.config import SlurmQueueConf

from deeprob_cli.sweep import SlurmLauncher as _SlurmLauncher


class SlurmLauncher(_SlurmLauncher):
    """deeprob_cli.sweep.SlurmLauncher."""


@dataclass
class DeeprobSlurmConf(SlurmQueueConf):
    _target_: str = "hydra_plugins.deeprob_launcher.SlurmLauncher"
    # a job that reaches its time limit is requeued up to this many times, continuing from its checkpoint
    max_num_timeout: int = 3
    # submitit's USR2 comes this many seconds before the limit: time to finish a step and write a checkpoint
    signal_delay_s: int = 120


ConfigStore.instance().store(group="hydra/launcher", name="slurm", node=DeeprobSlurmConf(), provider="deeprob")
