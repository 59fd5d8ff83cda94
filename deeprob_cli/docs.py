"""README's table of config groups and options, generated from conf/: `make readme` rewrites it.

tests/test_readme.py fails when the README's table and conf/ drift apart.
"""
import re
from pathlib import Path

from .config import CONFIG_DIR

README = Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- options:start -->", "<!-- options:end -->"
MULTI_SELECT = {"augment", "regularizer"}


def describe(path: Path) -> str:
    """The first comment line of an option's YAML (after any @package header)."""
    for line in path.read_text().splitlines():
        if line.startswith("#") and "@package" not in line:
            return line.lstrip("# ").strip().replace("|", "\\|")
    return ""


def options_table() -> str:
    rows = ["| group | option | what it does |", "|---|---|---|"]
    for group in sorted(p for p in CONFIG_DIR.iterdir() if p.is_dir()):
        label = f"`{group.name}` (multi-select)" if group.name in MULTI_SELECT else f"`{group.name}`"
        for option in sorted(group.glob("*.yaml")):
            rows.append(f"| {label} | `{option.stem}` | {describe(option)} |")
            label = ""
    return "\n".join(rows)


def update_readme(path: Path = README):
    text = path.read_text()
    new = re.sub(f"{START}.*?{END}", lambda _: f"{START}\n{options_table()}\n{END}", text, flags=re.S)
    path.write_text(new)


if __name__ == "__main__":
    update_readme()
