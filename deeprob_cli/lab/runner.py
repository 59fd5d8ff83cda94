"""Running claims: `deeprob lab CLAIM... [overrides]`, `deeprob lab --all`, `--list`, `--report FILE`.

    deeprob lab relu_speed dataset=image_folder dataset.root=/tmp/data/cifar10-jpeg
    deeprob lab --all dataset=synthetic lab.scale=0.05 out=runs/lab-smoke

Overrides reach every claim's composed config, except the keys a claim compares itself or its design sets (one
line, exit 2). The lab's own keys: lab.scale=F multiplies every design size (steps, images; 1 = the stated
design), lab.seeds=N the paired seeds (default: the claim's planned count; only a raise is allowed, and it marks
the result exploratory, as does lab.scale ≠ 1), lab.threads=N torch's threads per run (default 1: see
run_claim), lab.workers=N the sub-runs at a time, each in its own process on one thread (default 2: both cores).
"""
import json
import math
import shlex
import sys
import time
from datetime import datetime
from pathlib import Path

from .. import UserError
from .. import exits
from ..validate import Range, check_value
from .bench import Context, PremiseNotMet, refuse_compared
from .claim import CLAIMS, decide_claim
from .report import render_report, table_line

USAGE = ("usage: deeprob lab CLAIM... [overrides] [lab.scale=F] [lab.seeds=N] [lab.threads=N] [lab.workers=N] "
         "[out=DIR] | deeprob lab --all [...] "
         "[--report FILE] | deeprob lab --report FILE (re-render from the verdicts in its folder) | deeprob lab --list")


def run_claim(claim, overrides, out: Path, scale: float = 1.0, seeds: int = None, log=print, threads: int = 1,
              workers: int = 1) -> dict:
    """Measure the claim into out, decide it from the per-seed numbers, write verdict.json; return the verdict.

    threads: torch's intra-op threads. The claims' models are small: on 2 loaded cores one thread took 9× less CPU
    time per step than two (0.019 vs 0.177 s, the 4-conv net, batch 64) and ran 14× faster, spinning threads
    being the difference. workers: sub-runs at a time (Context.map), so one thread each still fills both cores."""
    import torch

    refuse_compared(claim.name, claim.compares, overrides)
    seeds = check_seeds(claim, seeds)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _run_claim(claim, overrides, Path(out), scale, seeds, log, workers)
    finally:
        torch.set_num_threads(before)


def check_seeds(claim, seeds) -> int:
    """The claim's planned seed count, or lab.seeds where it raises it; a lower count is refused."""
    if seeds is not None and seeds < claim.seeds:
        raise UserError(f"lab.seeds: {seeds} is below {claim.name}'s planned {claim.seeds} seeds (its design says "
                        f"why); lab.seeds may only raise it, e.g. lab.seeds={claim.seeds * 2}")
    return seeds or claim.seeds


def _run_claim(claim, overrides, out: Path, scale: float, seeds: int, log, workers: int) -> dict:
    if out.exists() and any(out.iterdir()):
        raise UserError(f"out: {out} already holds results; choose another folder")
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    ctx = Context(claim.name, overrides, out, scale, seeds, log, workers, claim.premise)
    try:
        samples, numbers = claim.measure(ctx)
        decided = decide_claim(claim, samples)
    except PremiseNotMet as e:
        numbers, decided = {}, {"verdict": "premise_not_met", "reason": f"premise not met on seed 0: {e}",
                                "parts": {}, "effect": None, "ci95": [None, None], "detectable_effect": None,
                                "n_seeds": 1, "planned_seeds": claim.seeds, "p": None,
                                "literature": {"size": None, "source": ""}}
    lab_args = [f"lab.scale={scale}"] * (scale != 1.0) + [f"lab.seeds={seeds}"] * (seeds != claim.seeds)
    verdict = {"claim": claim.name, "statement": claim.statement, "design": claim.design, "practice": claim.practice,
               **decided,
               "premise": ctx.premise_result, "exploratory": seeds != claim.seeds or scale != 1.0,
               "numbers": numbers, "notes": ctx.notes,
               "command": shlex.join(["deeprob", "lab", claim.name, *overrides, *lab_args]),
               "overrides": list(overrides), "scale": scale, "figure": "figure.png",
               "seconds": round(time.perf_counter() - started, 1)}
    text = json.dumps(verdict, indent=1, default=_plain, allow_nan=False) if _finite(verdict) else \
        json.dumps(_nulls(verdict), indent=1, default=_plain)
    (out / "verdict.json").write_text(text + "\n")
    verdict = json.loads(text)
    log_numbers(out, verdict)
    log(f"[lab {claim.name}] {table_line(verdict)}  ({out})")
    return verdict


def _plain(value):
    return value.item() if hasattr(value, "item") else str(value)


def _finite(node) -> bool:
    if isinstance(node, float):
        return math.isfinite(node)
    if isinstance(node, dict):
        return all(_finite(v) for v in node.values())
    if isinstance(node, (list, tuple)):
        return all(_finite(v) for v in node)
    return True


def _nulls(node):
    """JSON has no inf/nan: they become null (a diverged run's loss, an empty share)."""
    if isinstance(node, float):
        return node if math.isfinite(node) else None
    if isinstance(node, dict):
        return {k: _nulls(v) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [_nulls(v) for v in node]
    return node


def log_numbers(out: Path, verdict: dict):
    """The verdict's numbers as TensorBoard scalars lab/<key> at step 0 (next to the figure in the claim's folder)."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(out))
    for key, value in flatten({"effect": verdict["effect"], "detectable_effect": verdict["detectable_effect"],
                               "numbers": verdict["numbers"]}).items():
        writer.add_scalar(f"lab/{key}", value, 0)
    writer.close()


def flatten(node, prefix="") -> dict:
    """{'a/b/0': number} for every finite int/float/bool inside nested dicts and lists."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    flat = {}
    for key, value in items:
        if isinstance(value, (dict, list)):
            flat.update(flatten(value, f"{prefix}{key}/"))
        elif isinstance(value, (int, float)) and math.isfinite(value):
            flat[f"{prefix}{key}"] = float(value)
    return flat


LAB_SETTINGS = {"lab.scale": Range(0.001), "lab.seeds": Range(2, integer=True), "lab.threads": Range(1, integer=True),
                "lab.workers": Range(1, integer=True)}


def _number(key: str, text: str, kind, least):
    """The value of lab.KEY=TEXT, checked against its declaration (LAB_SETTINGS) like every other setting."""
    try:
        value = kind(text)
    except ValueError:
        value = text
    try:
        check_value(key, value, LAB_SETTINGS[key])
    except ValueError as e:
        raise UserError(f"{e}; e.g. {key}={kind(least * 2)}") from None
    return value


def parse(args):
    """(claims, overrides, out, report, listing, scale, seeds, threads, workers) from deeprob lab's arguments."""
    claims, overrides, out, report, listing, everything = [], [], None, None, False, False
    scale, seeds, threads, workers = 1.0, None, 1, 2
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        if arg == "--list":
            listing = True
        elif arg == "--all":
            everything = True
        elif arg == "--report":
            if not rest:
                raise UserError("--report: expected a file, e.g. --report runs/lecture/REPORT.md")
            report = Path(rest.pop(0))
        elif arg.startswith("out="):
            out = Path(arg.split("=", 1)[1])
        elif arg.startswith("lab.scale="):
            scale = _number("lab.scale", arg.split("=", 1)[1], float, 0.001)
        elif arg.startswith("lab.seeds="):
            seeds = _number("lab.seeds", arg.split("=", 1)[1], int, 2)
        elif arg.startswith("lab.threads="):
            threads = _number("lab.threads", arg.split("=", 1)[1], int, 1)
        elif arg.startswith("lab.workers="):
            workers = _number("lab.workers", arg.split("=", 1)[1], int, 1)
        elif arg.startswith("lab."):
            raise UserError(f"{arg.split('=')[0]}: no such key; the lab's own keys are lab.scale, lab.seeds, "
                            f"lab.threads and lab.workers")
        elif "=" in arg or arg.startswith("+") or arg.startswith("~"):
            overrides.append(arg)
        elif arg.startswith("-"):
            raise UserError(f"unknown option {arg!r}; {USAGE}")
        elif arg not in CLAIMS:
            raise UserError(f"claim: {arg!r} is not one of {', '.join(CLAIMS)} (deeprob lab --list)")
        else:
            claims.append(arg)
    if everything:
        claims = list(CLAIMS)
    if not claims and not listing and report is None:
        raise UserError(f"name a claim or --all; {USAGE}")
    for name in claims:  # before anything runs: a refused override (or too few seeds) costs nothing
        refuse_compared(name, CLAIMS[name].compares, overrides)
        check_seeds(CLAIMS[name], seeds)
    return claims, overrides, out, report, listing, scale, seeds, threads, workers


def error_verdict(name: str, error: str, folder: Path) -> dict:
    claim = CLAIMS[name]
    return {"claim": name, "statement": claim.statement, "design": claim.design, "verdict": "error",
            "reason": error, "effect": None, "ci95": [None, None], "detectable_effect": None, "n_seeds": 0,
            "planned_seeds": claim.seeds, "p": None, "premise": None, "exploratory": False,
            "literature": {"size": None, "source": ""}, "parts": {}, "numbers": {}, "notes": [],
            "command": "", "figure": "figure.png", "seconds": 0.0, "error": error, "folder": str(folder)}


def main(args=None):
    args = sys.argv[1:] if args is None else args
    if args and args[0] in ("-h", "--help"):  # (`deeprob lab --help` is answered by launch.run_plain_command)
        print(USAGE + "\n\n" + sys.modules[__package__].__doc__)  # the package's doc, without importing it back
        return 0
    try:
        claims, overrides, out, report, listing, scale, seeds, threads, workers = parse(args)
        if listing:
            width = max(map(len, CLAIMS))
            for c in CLAIMS.values():
                print(f"{c.name:<{width}}  {c.statement}")
            return 0
        if not claims and report:  # re-render a report from the verdicts already in its folder
            found = [json.loads((report.parent / c / "verdict.json").read_text()) | {"folder": str(report.parent / c)}
                     for c in CLAIMS if (report.parent / c / "verdict.json").is_file()]
            if not found:
                raise UserError(f"--report: no <claim>/verdict.json next to {report}; run deeprob lab --all first")
            total = sum(v.get("seconds", 0) for v in found)  # the claims' own times, summed
            report.write_text(render_report(found, report.parent, "(re-rendered from the verdicts)", total))
            print(f"report: {report} ({len(found)} claims)")
            return 0
        stamp = datetime.now().strftime("%Y-%m-%d/%H-%M-%S")
        out = out or Path("runs/lab") / (claims[0] if len(claims) == 1 else "all") / stamp
        folders = {c: out if len(claims) == 1 else out / c for c in claims}
        verdicts, started = [], time.perf_counter()
        for name in claims:
            try:
                verdicts.append({**run_claim(CLAIMS[name], overrides, folders[name], scale, seeds, threads=threads,
                                                   workers=workers),
                                 "folder": str(folders[name])})
            except Exception as e:
                if len(claims) == 1:
                    raise
                e = e if isinstance(e, UserError) else f"{type(e).__name__}: {e}"
                print(f"deeprob lab: error: {name}: {e}", file=sys.stderr)  # the other claims go on
                verdicts.append(error_verdict(name, str(e), folders[name]))
        if len(claims) > 1 or report:
            report = report or out / "REPORT.md"
            report.parent.mkdir(parents=True, exist_ok=True)
            total = time.perf_counter() - started
            report.write_text(render_report(verdicts, report.parent, shlex.join(["deeprob", "lab", *args]), total))
            print(f"report: {report}")
            print("\n".join(table_line(v) for v in verdicts))
            print(f"total {total:.0f} s")
        return 1 if any(v.get("error") for v in verdicts) else 0
    except UserError as e:
        return exits.report("lab", e)
