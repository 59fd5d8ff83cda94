"""REPORT.md, the lab handout: `deeprob lab --all ...` writes it, `deeprob lab --report FILE` re-renders it."""
import math
import os
from pathlib import Path


def _n(value, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def _ci(ci) -> str:
    return "—" if not ci or None in ci else f"[{_n(ci[0])}, {_n(ci[1])}]"


def table_line(v: dict) -> str:
    """One line per claim for the terminal: verdict, effect, interval, detectable effect, literature, seconds."""
    if v.get("error"):
        return f"{v['claim']:<18} error         {v['error']}"
    return (f"{v['claim']:<18} {v['verdict']:<13} effect {_n(v['effect']):>8} {_ci(v['ci95']):<22} "
            f"detectable {_n(v['detectable_effect']):>7}  literature {_n(v['literature']['effect']):>6}  "
            f"{v.get('seconds', 0):6.0f} s")


def _relative(path: Path, root: Path) -> str:
    return os.path.relpath(Path(path).resolve(), Path(root).resolve())


def render_report(verdicts: list, root: Path, command: str, total: float | None = None) -> str:
    """The handout: a verdict table, then per claim the lecture's sentence, the design, the figure, each part's
    effect ± interval beside the literature's figure, the verdict and the command that reproduces it."""
    lines = ["# The lecture's claims, tested", "",
             "Each claim below is decided from paired seeds (3 unless lab.seeds says otherwise) by a 95 % t-interval "
             "(deeprob_cli/stats.py): "
             "**holds** when the interval lies on the claimed side of 0; **does_not_hold** only when the design "
             "could have detected the literature's effect (detectable effect ≤ literature) and the interval "
             "excludes it; otherwise **inconclusive**. The detectable effect is the true effect the design finds "
             "with probability 0.8.", "", f"`{command}`" + (f" — total {total:.0f} s" if total is not None else ""),
             "", "| claim | verdict | effect | 95 % CI | detectable | literature | unit | seconds |",
             "|---|---|---|---|---|---|---|---|"]
    for v in verdicts:
        lines.append(f"| [{v['claim']}](#{v['claim']}) | {'error' if v.get('error') else v['verdict']} | "
                     f"{_n(v.get('effect'))} | {_ci(v.get('ci95'))} | {_n(v.get('detectable_effect'))} | "
                     f"{_n((v.get('literature') or {}).get('effect'))} | {v.get('unit', '')} | "
                     f"{v.get('seconds', 0):.0f} |")
    for v in verdicts:
        lines += ["", f"## {v['claim']}", "", f"> {v['statement']}", "", f"**Design.** {v['design']}", ""]
        figure = Path(v["folder"]) / v.get("figure", "figure.png")
        if figure.is_file():
            lines += [f"![{v['claim']}]({_relative(figure, root)})", ""]
        if v.get("error"):
            lines += [f"**error**: {v['error']}", ""]
            continue
        lines += ["| part | effect | 95 % CI | detectable | literature | seeds | verdict |", "|---|---|---|---|---|---|---|"]
        for part, r in v["parts"].items():
            lines.append(f"| {part} ({r.get('unit', '')}) | {_n(r['effect'])} | {_ci(r['ci95'])} | "
                         f"{_n(r['detectable_effect'])} | {_n(r['literature']['effect'])} | {r['n_seeds']} | "
                         f"{r['verdict']} |")
        for part, r in v["parts"].items():  # effects on a log scale read better as ratios
            if str(r.get("unit", "")).startswith("ln") and r["effect"] is not None and None not in r["ci95"]:
                lit = r["literature"]["effect"]
                lines += ["", f"*{part}* as a ratio: ×{math.exp(r['effect']):.3g} "
                              f"[{math.exp(r['ci95'][0]):.3g}, {math.exp(r['ci95'][1]):.3g}]"
                          + (f" (literature ×{math.exp(lit):.3g})" if lit is not None else "")]
        lines += ["", "Literature: " + "; ".join(f"*{p}*: {r['literature']['source']}" for p, r in v["parts"].items()),
                  "", f"**Verdict: {v['verdict']}** — {v['reason']} ({v.get('seconds', 0):.0f} s)."]
        if v.get("notes"):
            lines += ["", "Run notes: " + "; ".join(v["notes"]) + "."]
        lines += ["", "```", v["command"], "```"]
    return "\n".join(lines) + "\n"
