"""deeprob's Slurm launcher as a Hydra plugin (Hydra instantiates launchers only from the hydra_plugins
namespace): `deeprob train -m ... hydra/launcher=slurm` (conf/hydra/launcher/slurm.yaml). The code lives in
deeprob_cli/sweep.py; this module only gives it the name Hydra accepts. Importing it must stay cheap (no torch,
no submitit): Hydra imports every plugin module at start-up."""
from deeprob_cli.sweep import SlurmLauncher as _SlurmLauncher


class SlurmLauncher(_SlurmLauncher):
    """deeprob_cli.sweep.SlurmLauncher."""
