"""The README's options table is generated from conf/ and must not drift; its commands must exist."""
import re

from deeprob_cli.docs import END, README, START, options_table


def test_readme_options_table_matches_conf():
    text = README.read_text()
    current = text.split(START)[1].split(END)[0].strip()
    assert current == options_table(), "README's options table is stale: run `make readme`"


def test_readme_commands_are_real_make_targets():
    makefile = (README.parent / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z-]+):", makefile, flags=re.M))
    for target in re.findall(r"`make ([a-z-]+)`", README.read_text()):
        assert target in targets, target
