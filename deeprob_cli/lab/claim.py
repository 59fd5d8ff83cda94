"""What a claim is, and how the lab decides one: `deeprob lab --list` shows the registry.

A claim is declared with @claim right above the function that measures it: the lecture's sentence, the design in
one paragraph, the config keys it varies itself (a user's override of them is refused), and one Test per
comparison it decides on: the expected direction, the literature's effect in the measure's own units and where
that number comes from. All of this is fixed before any run. The measure returns only per-seed numbers; the
verdict is computed here from them with deeprob_cli.stats (paired 95 % t-interval, power-based detectable effect,
holds / does_not_hold / inconclusive), so a test can recompute every verdict from verdict.json alone.
"""
import math
from dataclasses import dataclass
from typing import Callable

from .. import stats

CLAIMS = {}  # name -> Claim, in declaration order (the report's order)


@dataclass(frozen=True)
class Test:
    """One comparison: samples a (and b, paired by seed) decide whether mean(a − b + margin) lies on the side
    `direction` of 0. margin turns "not worse by more than m" (non-inferiority) or "below a bound" into that form."""
    direction: int
    source: str  # where the literature's number (or the expected direction) comes from: figure and citation
    literature: float | None = None  # the reported effect in the same units (after margin); None: direction only
    unit: str = ""
    margin: float = 0.0
    premise: bool = False  # the design's regime (e.g. "the baseline overfits"): unless it holds, nothing is decided


@dataclass(frozen=True)
class Claim:
    name: str
    statement: str  # the lecture's words
    design: str  # the experiment in one paragraph
    tests: dict  # part -> Test; the first part is the headline of the table
    compares: tuple  # config keys the claim sets per arm: a user override of them would silently replace them
    measure: Callable  # (Context) -> (samples {part: (a, b or None)}, numbers {...}); draws figure.png


def claim(name: str, statement: str, design: str, tests: dict, compares=()):
    """Register the decorated measure as claim `name`, declared together with its statement, design and tests."""
    def register(measure):
        CLAIMS[name] = Claim(name, statement, " ".join(design.split()), dict(tests), tuple(compares), measure)
        return measure
    return register


# ---------------------------------------------------------------- decisions (the lab's use of stats.py)

def estimate(sample, test: Test) -> stats.Estimate:
    """The estimate of one part: paired differences a − b (+ margin), or the mean of a (+ margin) when b is None."""
    a, b = sample
    a = [x + test.margin for x in a]
    return stats.one_sample(a) if b is None else stats.paired(a, b)


def judge(sample, test: Test) -> dict:
    """verdict.json's record of one part: stats.record's fields plus the raw per-seed values and the margin."""
    a, b = sample
    base = {"a": list(a), "b": None if b is None else list(b), "margin": test.margin, "unit": test.unit,
            "premise": test.premise}
    finite = [v for v in (*a, *(b or ())) if not math.isfinite(v)]
    if len(a) < 2 or finite or (b is not None and len(a) != len(b)):
        why = "non-finite values" if finite else f"{len(a)} usable seed(s); an interval needs ≥ 2 pairs"
        return {**base, "design": "paired" if b is not None else "one sample", "n_seeds": len(a), "effect": None,
                "sd": None, "ci95": [None, None], "detectable_effect": None,
                "literature": {"effect": test.literature, "source": test.source}, "verdict": "inconclusive",
                "reason": why}
    return {**base, **stats.record(estimate(sample, test), test.literature, test.source, test.direction)}


def overall(records: dict) -> tuple:
    """(verdict, reason) of a claim from its parts: inconclusive when a premise part (the regime the design needs)
    does not hold; holds when every part holds; does_not_hold when a part was refuted by a design able to see the
    literature's effect; otherwise inconclusive (naming the undecided parts)."""
    failed = [p for p, r in records.items() if r.get("premise") and r["verdict"] != "holds"]
    if failed:
        return "inconclusive", "the design's premise is not met (" + "; ".join(
            f"{p}: {records[p]['reason']}" for p in failed) + "): its comparisons decide nothing"
    refuted = [p for p, r in records.items() if r["verdict"] == "does_not_hold"]
    if refuted:
        return "does_not_hold", "; ".join(f"{p}: {records[p]['reason']}" for p in refuted)
    open_ = [p for p, r in records.items() if r["verdict"] != "holds"]
    if open_:
        return "inconclusive", "; ".join(f"{p}: {records[p]['reason']}" for p in open_)
    return "holds", f"all {len(records)} part(s) hold"


def decide_claim(claim_: Claim, samples: dict) -> dict:
    """The verdict fields of a claim: headline part's estimate at the top level, every part under `parts`."""
    missing = set(claim_.tests) - set(samples)
    if missing:
        raise AssertionError(f"{claim_.name}: the measure returned no sample for {sorted(missing)}")
    records = {part: judge(samples[part], test) for part, test in claim_.tests.items()}
    verdict, reason = overall(records)
    head = records[next(iter(claim_.tests))]
    top = {k: head[k] for k in ("n_seeds", "effect", "ci95", "detectable_effect", "literature", "unit")}
    return {"comparison": head["design"], **top, "verdict": verdict, "reason": reason, "parts": records}
