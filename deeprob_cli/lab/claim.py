"""What a claim is, and how the lab decides one: `deeprob lab --list` shows the registry.

A claim is declared with @claim right above the function that measures it: the lecture's sentence, the design in
one paragraph (which justifies the planned seed count), the planned number of paired seeds, the premise (the
regime the literature measured in, checked on the first seed before the rest run), the config keys it varies
itself (a user's override of them is refused), and one Test per comparison it decides on. All of this is fixed
before any run. The measure returns only per-seed numbers; the verdict is computed here with deeprob_cli.stats on
the 95 % interval alone (superiority, non-inferiority or equivalence by two one-sided tests against the margin,
a significant reversal refutes), identities are decided as exact, so a test can recompute every verdict from
verdict.json alone.
"""
import math
from dataclasses import dataclass
from typing import Callable

from .. import stats

CLAIMS = {}  # name -> Claim, in declaration order (the report's order)
LEAST_SEEDS = 5  # every comparative claim: with 3 seeds, Holm over the lecture's 16 claims drops 5 of 11 "holds"


@dataclass(frozen=True)
class Test:
    """One comparison: samples a (and b, paired by seed) decide on the true mean d of a (or a − b), in the
    direction `direction` (+1: d > 0 as claimed). margin m > 0: non-inferiority (d > −m), or with equivalence
    |d| < m. size: the literature's stated effect (in the claimed direction), for "holds, smaller than the
    literature". exact: the outcome is an identity: every seed's a within this bound (a·direction ≥
    exact·direction), decided as exact, not by an interval."""
    direction: int
    source: str  # where the literature's number (or the expected direction) comes from: figure and citation
    unit: str = ""
    margin: float = 0.0
    equivalence: bool = False
    size: float | None = None
    exact: float | None = None
    identity: str = ""  # the identity an exact part checks, named in its verdict

    @property
    def kind(self) -> str:
        return "exact" if self.exact is not None else "equivalence" if self.equivalence else \
            "non-inferiority" if self.margin else "superiority"


@dataclass(frozen=True)
class Claim:
    name: str
    statement: str  # the lecture's words
    design: str  # the experiment in one paragraph, with why it plans `seeds` seeds
    tests: dict  # part -> Test; the first part is the headline of the table
    compares: tuple  # config keys the claim sets per arm: a user override of them would silently replace them
    measure: Callable  # (Context) -> (samples {part: (a, b or None)}, numbers {...}); draws figure.png
    seeds: int = LEAST_SEEDS  # planned paired seeds; lab.seeds may only raise it (then the result is exploratory)
    premise: str = ""  # the regime the comparison needs, checked on the first seed (Context.premise)
    practice: str = ""  # one sentence: what the claim means for someone training a network


def claim(name: str, statement: str, design: str, tests: dict, compares=(), seeds: int = LEAST_SEEDS,
          premise: str = "", practice: str = ""):
    """Register the decorated measure as claim `name`, declared together with its statement, design and tests."""
    comparative = any(t.exact is None for t in tests.values())
    if comparative and seeds < LEAST_SEEDS:
        raise AssertionError(f"{name}: a comparative claim plans ≥ {LEAST_SEEDS} seeds, got {seeds}")

    def register(measure):
        CLAIMS[name] = Claim(name, statement, " ".join(design.split()), dict(tests), tuple(compares), measure,
                             seeds, " ".join(premise.split()), practice)
        return measure
    return register


# ---------------------------------------------------------------- decisions (the lab's use of stats.py)

def estimate(sample) -> stats.Estimate:
    """The estimate of one part: paired differences a − b, or the mean of a when b is None."""
    a, b = sample
    return stats.one_sample(a) if b is None else stats.paired(a, b)


def _unusable(a, b) -> str:
    if any(not math.isfinite(v) for v in (*a, *(b or ()))):
        return "non-finite values"
    if b is not None and len(a) != len(b):
        return f"the arms have {len(a)} and {len(b)} values"
    return f"{len(a)} usable seed(s); an interval needs ≥ 2" if len(a) < 2 else ""


def judge(sample, test: Test, planned: int = LEAST_SEEDS) -> dict:
    """verdict.json's record of one part: the raw per-seed values, the estimate and interval, the verdict with its
    reason and one-sided p-value, and the detectable effect at the planned seed count (information only: the
    true effect found with probability 0.8 by `planned` pairs with this spread)."""
    a, b = sample
    base = {"a": list(a), "b": None if b is None else list(b), "kind": test.kind, "margin": test.margin,
            "unit": test.unit, "literature": {"size": test.size, "source": test.source}, "planned_seeds": planned}
    why = _unusable(a, b)
    if why or test.exact is not None and b is not None:
        return {**base, "design": "exact" if test.exact is not None else "paired" if b is not None else "one sample",
                "n_seeds": len(a), "effect": None, "sd": None, "ci95": [None, None], "detectable_effect": None,
                "verdict": "inconclusive", "reason": why or "an exact part takes one sample", "p": None}
    if test.exact is not None:
        d = stats.decide_exact(a, test.exact, test.direction, test.identity)
        return {**base, "design": "exact", "n_seeds": len(a), "effect": None, "sd": None, "ci95": [None, None],
                "detectable_effect": None, "bound": test.exact, "verdict": d.verdict, "reason": d.reason, "p": None}
    e = estimate(sample)
    d = stats.decide(e, test.direction, test.margin, test.size, test.equivalence)
    detectable = stats.detectable_effect(e.sd / math.sqrt(planned), planned - 1) if e.sd == e.sd else math.inf
    return {**base, **e.as_dict(), "detectable_effect": detectable if math.isfinite(detectable) else None,
            "verdict": d.verdict, "reason": d.reason, "p": d.p}


def overall(records: dict) -> tuple:
    """(verdict, reason, p) of a claim from its parts: does_not_hold when any part is refuted (p: the smallest
    refuting part's); inconclusive while any part is open; else holds (p: the largest part's — every part must
    hold, an intersection-union test), "holds_smaller" when a part holds but below the literature's size, and
    exact when every part is exact (no p: counted apart from Holm's family)."""
    refuted = [p for p, r in records.items() if r["verdict"] == "does_not_hold"]
    if refuted:
        ps = [records[p]["p"] for p in refuted if records[p]["p"] is not None]
        return "does_not_hold", "; ".join(f"{p}: {records[p]['reason']}" for p in refuted), min(ps) if ps else None
    open_ = [p for p, r in records.items() if r["verdict"] == "inconclusive"]
    decided = [r["p"] for r in records.values() if r["p"] is not None]
    if open_:
        return "inconclusive", "; ".join(f"{p}: {records[p]['reason']}" for p in open_), max(decided, default=None)
    verdicts = {r["verdict"] for r in records.values()}
    if verdicts == {"exact"}:
        return "exact", "; ".join(f"{p}: {r['reason']}" for p, r in records.items()), None
    verdict = "holds_smaller" if "holds_smaller" in verdicts else "holds"
    exact = sum(r["verdict"] == "exact" for r in records.values())
    return verdict, f"all {len(records)} part(s) hold" + (f" ({exact} exact)" if exact else ""), max(decided)


def decide_claim(claim_: Claim, samples: dict, planned: int = None) -> dict:
    """The verdict fields of a claim: headline part's estimate at the top level, every part under `parts`."""
    missing = set(claim_.tests) - set(samples)
    if missing:
        raise AssertionError(f"{claim_.name}: the measure returned no sample for {sorted(missing)}")
    planned = planned or claim_.seeds
    records = {part: judge(samples[part], test, planned) for part, test in claim_.tests.items()}
    verdict, reason, p = overall(records)
    head = records[next(iter(claim_.tests))]
    top = {k: head[k] for k in ("n_seeds", "effect", "ci95", "detectable_effect", "literature", "unit", "kind")}
    return {"comparison": head["design"], **top, "planned_seeds": planned, "verdict": verdict, "reason": reason,
            "p": p, "parts": records}
