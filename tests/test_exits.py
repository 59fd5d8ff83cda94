"""The one exit-code table (deeprob_cli.exits): every failure class, its code and its one line."""
import errno
import os
import signal

import pytest

from deeprob_cli import UserError
from deeprob_cli.exits import EXITS, Diverged, Interrupted, Stopped, ending, guarded, report, unexpected


@pytest.mark.parametrize("error, code, line", [
    (UserError("optim.lr: -1 is not allowed"), 2, "error: optim.lr: -1 is not allowed"),
    (Diverged("loss became nan at step 3"), 3, "diverged: loss became nan at step 3"),
    (Interrupted("SIGTERM at step 7: checkpoint saved", 128 + signal.SIGTERM), 143,
     "interrupted: SIGTERM at step 7: checkpoint saved"),
    (Stopped("SIGINT", 130), 130, "interrupted: SIGINT during start-up; nothing was run"),
    (KeyboardInterrupt(), 130, "interrupted"),
    (OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "run/summary.json"), 2,
     "error: cannot write run/summary.json: No space left on device; free space or choose a writable folder"),
    (RuntimeError("a bug\nwith a second line"), 1,
     "failed: RuntimeError: a bug (HYDRA_FULL_ERROR=1 shows the traceback)"),
])
def test_each_failure_class_has_its_code_and_one_line(error, code, line):
    assert ending(error) == (code, line)
    assert unexpected(error) == (code == 1)


def test_the_table_lists_each_class_once_and_ends_with_the_catch_all():
    classes = [row[0] for row in EXITS]
    assert len(classes) == len(set(classes)) and classes[-1] is Exception
    for i, cls in enumerate(classes):  # a class after one of its bases would never be reached
        assert not any(issubclass(cls, earlier) for earlier in classes[:i]), cls


def test_report_prints_one_line_naming_the_command(capsys):
    assert report("eval", UserError("split: 'x' is not allowed"), hint="; try split=val") == 2
    assert capsys.readouterr().err == "deeprob eval: error: split: 'x' is not allowed; try split=val\n"


def test_guarded_ends_the_process_with_the_tables_code(capsys, monkeypatch):
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    assert guarded("plot", lambda x: x + 1, 1) == 2
    for error, code in ((UserError("no"), 2), (Diverged("nan"), 3), (ValueError("bug"), 1)):
        def fail():
            raise error
        with pytest.raises(SystemExit) as exit_:
            guarded("compare", fail)
        assert exit_.value.code == code
    assert len(capsys.readouterr().err.splitlines()) == 3
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")  # a bug keeps its traceback; a refusal stays one line
    with pytest.raises(ValueError):
        guarded("compare", lambda: int("x"))
