"""REPORT.md, the lab handout: `deeprob lab --all ...` writes it, `deeprob lab --report FILE` re-renders it."""
import math
import os
from pathlib import Path

from .. import stats

RULES = ("Each claim is decided from paired seeds, as many as its design plans (≥ 5 for a comparison; "
         "`lab.seeds` may only raise it, and marks the run exploratory), on the 95 % t-interval alone "
         "(deeprob_cli/stats.py): **holds** when it lies on the claimed side of 0 (or above −margin for "
         "non-inferiority, inside ±margin for equivalence: two one-sided tests); **holds_smaller** when it holds "
         "but lies below the literature's stated size; **does_not_hold** when it lies wholly on the wrong side "
         "(a significant reversal, or beyond the margin), or holds 0 while excluding the stated size; else "
         "**inconclusive**. Identities are decided as **exact** (every seed within the bound) and counted apart. "
         "A claim's premise (the regime the literature measured in) is checked on the first seed before the rest "
         "run; an unmet premise aborts the claim. The headline's Holm column keeps a decided verdict only where "
         "its Holm-adjusted one-sided p ≤ 0.025 over the family of non-exact claims. The detectable effect (the "
         "true effect found with probability 0.8) is information, computed at the planned seed count.")


def _n(value, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def _ci(ci) -> str:
    return "—" if not ci or None in ci else f"[{_n(ci[0])}, {_n(ci[1])}]"


def table_line(v: dict) -> str:
    """One line per claim for the terminal: verdict, effect, interval, detectable effect, literature, seconds."""
    if v.get("error"):
        return f"{v['claim']:<18} error         {v['error']}"
    return (f"{v['claim']:<18} {v['verdict']:<15} effect {_n(v['effect']):>8} {_ci(v['ci95']):<22} "
            f"detectable {_n(v['detectable_effect']):>7}  literature {_n(v['literature'].get('size')):>6}  "
            f"n {v.get('n_seeds')}/{v.get('planned_seeds')}  {v.get('seconds', 0):6.0f} s")


def _relative(path: Path, root: Path) -> str:
    return os.path.relpath(Path(path).resolve(), Path(root).resolve())


def holm_column(verdicts: list) -> list:
    """(Holm verdict, adjusted p) per claim: the family is every claim with a p-value (exact ones, errors and
    unmet premises are counted apart)."""
    plain = [v.get("verdict", "error") if not v.get("error") else "error" for v in verdicts]
    pvalues = [v.get("p") if p not in ("error", "premise_not_met") else None for v, p in zip(verdicts, plain)]
    return list(zip(*stats.holm_verdicts(plain, pvalues)))


def headline(verdicts: list) -> list:
    """The verdict table: one row per claim, the Holm-adjusted verdict beside the per-claim one."""
    lines = ["| claim | verdict | Holm (family α 0.025) | adjusted p | effect | 95 % CI | literature | unit | seeds "
             "(planned) | premise | seconds |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for v, (holm, adjusted) in zip(verdicts, holm_column(verdicts)):
        premise = v.get("premise") or {}
        met = "—" if not premise else "met" if premise.get("met") else "**not met**"
        explore = " (exploratory)" if v.get("exploratory") else ""
        lines.append(f"| [{v['claim']}](#{v['claim']}) | {'error' if v.get('error') else v['verdict']}{explore} | "
                     f"{holm} | {_n(adjusted)} | {_n(v.get('effect'))} | {_ci(v.get('ci95'))} | "
                     f"{_n((v.get('literature') or {}).get('size'))} | {v.get('unit', '')} | "
                     f"{v.get('n_seeds')} ({v.get('planned_seeds')}) | {met} | {v.get('seconds', 0):.0f} |")
    counts = {}
    for holm, _ in holm_column(verdicts):
        counts[holm] = counts.get(holm, 0) + 1
    return lines + ["", "After Holm: " + ", ".join(f"{k} {c}" for k, c in counts.items()) + "."]


def parts_table(v: dict) -> list:
    lines = ["| part | kind | effect | 95 % CI | detectable (planned n) | literature size | seeds | verdict |",
             "|---|---|---|---|---|---|---|---|"]
    for part, r in v["parts"].items():
        effect = f"all within {_n(r.get('bound'))}" if r.get("kind") == "exact" else _n(r["effect"])
        margin = f" ±{_n(r['margin'])}" if r.get("margin") else ""
        lines.append(f"| {part} ({r.get('unit', '')}) | {r.get('kind')}{margin} | {effect} | {_ci(r['ci95'])} | "
                     f"{_n(r['detectable_effect'])} | {_n(r['literature'].get('size'))} | {r['n_seeds']} | "
                     f"{r['verdict']} |")
    for part, r in v["parts"].items():  # effects on a log scale read better as ratios
        if str(r.get("unit", "")).startswith("ln") and r["effect"] is not None and None not in r["ci95"]:
            size = r["literature"].get("size")
            lines += ["", f"*{part}* as a ratio: ×{math.exp(r['effect']):.3g} "
                          f"[{math.exp(r['ci95'][0]):.3g}, {math.exp(r['ci95'][1]):.3g}]"
                      + (f" (literature ×{math.exp(size):.3g})" if size is not None else "")]
    return lines


def claim_section(v: dict, root: Path) -> list:
    lines = ["", f"## {v['claim']}", "", f"> {v['statement']}", "", f"**Design.** {v['design']}", ""]
    premise = v.get("premise")
    if premise:
        lines += [f"**Premise** ({'met' if premise['met'] else 'NOT met'}): {premise['statement']} — measured on "
                  f"seed 0: {premise['measured']}.", ""]
    figure = Path(v["folder"]) / v.get("figure", "figure.png")
    if figure.is_file():
        lines += [f"![{v['claim']}]({_relative(figure, root)})", ""]
    if v.get("error"):
        return lines + [f"**error**: {v['error']}", ""]
    if v["parts"]:
        lines += parts_table(v)
        lines += ["", "Literature: " + "; ".join(f"*{p}*: {r['literature']['source']}" for p, r in v["parts"].items())]
    lines += ["", f"**Verdict: {v['verdict']}** — {v['reason']} ({v.get('seconds', 0):.0f} s)."]
    if v.get("practice"):
        lines += ["", f"**In practice** (if the verdict holds): {v['practice']}"]
    if v.get("notes"):
        lines += ["", "Run notes: " + "; ".join(v["notes"]) + "."]
    return lines + ["", "```", v["command"], "```"]


def render_report(verdicts: list, root: Path, command: str, total: float | None = None) -> str:
    """The handout: the Holm-adjusted verdict table, then per claim the lecture's sentence, the design, the
    premise's result, the figure, each part's effect ± interval beside the literature, the verdict and the
    command that reproduces it."""
    lines = ["# The lecture's claims, tested", "", RULES, "",
             f"`{command}`" + (f" — total {total:.0f} s" if total is not None else ""), "", *headline(verdicts)]
    for v in verdicts:
        lines += claim_section(v, root)
    return "\n".join(lines) + "\n"
