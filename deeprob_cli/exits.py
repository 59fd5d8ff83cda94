"""How every deeprob command ends: the failure classes, the one table from each to its exit code and one-line
message, and the stop signals (SIGINT/SIGTERM) that end a run early.

    deeprob train optim.lr=-1         → deeprob train: error: optim.lr: -1 is not allowed; ...   (exit 2)
    deeprob train optim.lr=1e30       → deeprob train: diverged: loss became nan at step 3 ...  (exit 3)

train, init-stats, eval, compare, plot and lab all end through `report` (or `guarded`, which calls it), so a
new failure class or a changed code is one row of EXITS. Torch-free: the launch installs the stop signals
before torch is imported.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
from contextlib import contextmanager

from . import UserError


class Diverged(Exception):
    """The loss (or a weight) became NaN or infinite."""


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived; summary.json says so (and a checkpoint was written where there was work to keep)."""

    def __init__(self, message, code):
        super().__init__(message)
        self.code = code


class Stopped(BaseException):
    """SIGINT/SIGTERM outside the training loop (start-up, the final evaluation), raised where it lands: there is
    no step to finish first. A BaseException like KeyboardInterrupt, so that no `except Exception` swallows it."""

    def __init__(self, name: str, code: int):
        super().__init__(name)
        self.signal, self.code = name, code


# ---------------------------------------------------------------- the exit-code table

# failure class → exit code (None: the signal's own, 128 + N) and the word after "deeprob COMMAND: ". The first
# row whose class the error is an instance of decides, so the more specific classes come first.
EXITS = (
    (Stopped, None, "interrupted"),  # a signal where there is no step to finish: nothing was run
    (KeyboardInterrupt, 128 + signal.SIGINT, "interrupted"),  # Ctrl-C before deeprob's handlers were installed
    (Interrupted, None, "interrupted"),  # a signal during training: the checkpoint is kept, the message says how
    (UserError, 2, "error"),  # a refusal: configuration, data, a run folder (nothing was run)
    (Diverged, 3, "diverged"),  # the loss or a weight became NaN/inf
    (OSError, 2, "error"),  # a full disk, a folder turned read-only: what was written before is intact
    (Exception, 1, "failed"),  # unexpected: a bug (HYDRA_FULL_ERROR=1 shows its traceback)
)


def ending(error: BaseException, hint: str = "") -> tuple:
    """(exit code, "WORD: one line") for an error that ends a command; `hint` is appended to the line."""
    code, word = next((code, word) for cls, code, word in EXITS if isinstance(error, cls))
    if isinstance(error, Stopped):
        line = f"{error.signal} during start-up; nothing was run"
    elif isinstance(error, KeyboardInterrupt):  # (before deeprob's handlers, or a command without them)
        return code, word
    elif isinstance(error, OSError):
        line = f"cannot write {error.filename}: {error.strerror or error}; free space or choose a writable folder"
    elif word == "failed":
        reason = (str(error).strip().splitlines() or [""])[0][:300]
        line = f"{type(error).__name__}: {reason}"
        hint = hint or " (HYDRA_FULL_ERROR=1 shows the traceback)"
    else:
        line = str(error)
    return getattr(error, "code", None) if code is None else code, f"{word}: {line}{hint}"


def unexpected(error: BaseException) -> bool:
    """An error of no expected class (a bug): exit code 1, and HYDRA_FULL_ERROR=1 shows its traceback."""
    return next(cls for cls, _, _ in EXITS if isinstance(error, cls)) is Exception


def report(command: str, error: BaseException, hint: str = "") -> int:
    """Print the error's one line on stderr (`deeprob COMMAND: WORD: ...`); its exit code."""
    code, line = ending(error, hint)
    print(f"deeprob {command}: {line}", file=sys.stderr)
    return code


def guarded(command: str, function, *args):
    """function(*args), or its failure reported as one line and the process ended with the table's code.
    HYDRA_FULL_ERROR=1 lets an unexpected error (a bug) through with its traceback."""
    try:
        return function(*args)
    except SystemExit:
        raise
    except BaseException as e:
        if full_error() and unexpected(e):
            raise
        sys.exit(report(command, e))


def full_error() -> bool:
    """HYDRA_FULL_ERROR=1: unexpected errors keep their traceback."""
    return os.environ.get("HYDRA_FULL_ERROR") == "1"


# ---------------------------------------------------------------- stop signals

# the signals that stop a run the way Ctrl-C does (the step finishes, a checkpoint and summary.json are written):
# SIGHUP (the terminal closed), SIGQUIT (Ctrl-\), SIGUSR1 (a scheduler's warning) would otherwise end it at once
STOPS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1")
              if hasattr(signal, name))


class StopSignals:
    """SIGINT/SIGTERM, from launch.prepare() (before Hydra) to the end of the command. Inside `deferred()` (the
    training steps and validation) a signal only sets a flag, checked after each step and after each epoch's
    validation, so that the step finishes and a checkpoint is written; elsewhere it raises Stopped at once. A
    second signal while the first is being handled is only recorded."""

    def __init__(self):
        self.signal, self.code, self.defer, self.previous = None, 0, False, {}

    def _handle(self, signum, frame):
        first = self.signal is None
        self.signal, self.code = signal.Signals(signum).name, 128 + signum
        if first and not self.defer and signum in STOPS:
            raise Stopped(self.signal, self.code)  # (another signal passed on to us, Slurm's USR2: only the flag)

    def install(self) -> bool:
        """Take over SIGINT and SIGTERM (main thread only); False when already installed or not possible."""
        if self.previous or threading.current_thread() is not threading.main_thread():
            return False
        self.signal, self.code, self.defer = None, 0, False
        for sig in STOPS:
            self.previous[sig] = signal.signal(sig, self._handle)
        return True

    def uninstall(self):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous = {}

    @contextmanager
    def installed(self):
        mine = self.install()
        try:
            yield self
        finally:
            if mine:
                self.uninstall()

    @contextmanager
    def deferred(self):
        before, self.defer = self.defer, True
        try:
            yield self
        finally:
            self.defer = before


SIGNALS = StopSignals()  # one per process: launch.prepare() installs it, the run reads it, train.cli() hands it back
