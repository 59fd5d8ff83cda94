"""The command line's own conventions: `deeprob --version`, `--help` on every sub-command, Hydra's bash completion
(`eval "$(deeprob train -sc install=bash)"`) driven through bash's completion function as a shell would."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from deeprob_cli import __version__
from deeprob_cli.launch import HYDRA_COMMANDS, PLAIN_COMMANDS

from conftest import run_cli

COMPLETE = r'''
eval "$(deeprob train -sc install=bash)"
complete_line() {
    COMP_LINE="$1"; COMP_POINT=${#1}; read -ra words <<< "$1"
    if [[ "$1" == *" " ]]; then COMP_CWORD=${#words[@]}; else COMP_CWORD=$((${#words[@]} - 1)); fi
    COMPREPLY=(); hydra_bash_completion; echo "${COMPREPLY[*]}"
}
'''


def test_version_and_help_of_every_command(tmp_path):
    assert run_cli("--version", cwd=tmp_path).stdout.strip() == f"deeprob {__version__}"
    for command in [*HYDRA_COMMANDS, *PLAIN_COMMANDS]:
        result = run_cli(command, "--help", cwd=tmp_path)
        assert result.returncode == 0 and result.stdout.startswith(f"usage: deeprob {command}"), command
    assert not (tmp_path / "runs").exists()


def test_init_stats_help_lists_only_its_own_groups(tmp_path):
    out = run_cli("init-stats", "--help", cwd=tmp_path).stdout
    assert "activation  [default: relu]" in out and "init  [default: kaiming]" in out
    assert "augment" not in out and "  init_stats:" in out and "dims:" in out


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
@pytest.mark.parametrize("line, expected", [
    ("deeprob tr", {"train"}),
    ("deeprob init", {"init-stats"}),
    ("deeprob train activation=ge", {"activation=gelu"}),
    ("deeprob train init=ka", {"init=kaiming"}),
    ("deeprob train trainer.ep", {"trainer.epochs="}),
    ("deeprob train regularizer=drop", {"regularizer=dropout", "regularizer=dropconnect"}),
    ("deeprob init-stats init_stats.b", {"init_stats.batch="}),
])
def test_bash_completion_completes_commands_groups_options_and_keys(tmp_path, line, expected):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(["bash", "-c", COMPLETE + f"complete_line {line!r}"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert set(result.stdout.split()) == expected
