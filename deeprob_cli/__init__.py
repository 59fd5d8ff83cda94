"""deeprob: experiment runner for the 'Training Neural Networks' lecture. Start with `deeprob --help`."""

__version__ = "0.1.0"


class UserError(Exception):
    """A mistake in what the user asked for (config, paths, data): reported as one line, exit code 2."""
