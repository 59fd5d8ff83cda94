"""Paired-seed statistics for `deeprob lab`, `deeprob compare` and the benchmarks: mean difference, 95 % t-interval,
smallest detectable effect, one-sided p-values, Holm's adjustment, and the verdict (holds / holds_smaller /
does_not_hold / inconclusive, decided on the interval alone; exact for identities).

    python -c "from deeprob_cli.stats import *; e = paired([.71, .69, .73], [.66, .67, .70]); print(summary(e))"
    python -c "from deeprob_cli.stats import *; print(decide(paired([.71, .69, .73], [.66, .67, .70]), +1))"

Pure Python (no scipy): the Student-t distribution function is written through the regularized incomplete beta
function, I_x(a, b), evaluated by its continued fraction (DLMF 8.17.22, with the modified Lentz method), and its
quantile by bisection on that distribution function. The smallest detectable effect is the power-based one: the
true mean difference that a two-sided t-test at α = 0.05 detects with probability 0.8 (noncentral t, computed by
quadrature over the χ distribution of the standard error's scale), so a design that "could have detected" an
effect finds it four times out of five, not one time out of two as the interval's half-width would.
"""
import math
from dataclasses import dataclass
from functools import lru_cache

ALPHA = 0.05  # two-sided: 95 % intervals
POWER = 0.8  # the usual target power for "the design could have detected it"
VERDICTS = ("holds", "holds_smaller", "does_not_hold", "inconclusive", "exact")


# ---------------------------------------------------------------- Student t

def betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b) for a, b > 0 and 0 ≤ x ≤ 1."""
    if not (a > 0 and b > 0 and 0 <= x <= 1):
        raise ValueError(f"betainc: needs a, b > 0 and 0 ≤ x ≤ 1, got a={a}, b={b}, x={x}")
    if x in (0, 1):
        return float(x)
    # the continued fraction converges fast for x < (a+1)/(a+b+2); use I_x(a,b) = 1 − I_{1−x}(b,a) above it
    if x > (a + 1) / (a + b + 2):
        return 1.0 - betainc(b, a, 1.0 - x)
    log_front = a * math.log(x) + b * math.log1p(-x) - math.log(a) - _log_beta(a, b)
    return math.exp(log_front) * _beta_fraction(a, b, x)


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def _beta_fraction(a: float, b: float, x: float) -> float:
    """1 / (1 + d1 / (1 + d2 / (1 + ...))) with DLMF 8.17.22's coefficients, by the modified Lentz method."""
    tiny, eps = 1e-300, 1e-15
    f, c, d = tiny, tiny, 0.0
    for j in range(1, 4000):
        m = (j - 1) // 2  # numerator j is d_{j-1}; the first numerator is 1
        if j == 1:
            numerator = 1.0
        elif j % 2 == 1:  # d_{2m} = m (b − m) x / ((a + 2m − 1)(a + 2m))
            numerator = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        else:  # d_{2m+1} = −(a + m)(a + b + m) x / ((a + 2m)(a + 2m + 1))
            numerator = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
        d = 1.0 + numerator * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + numerator / c
        c = c if abs(c) > tiny else tiny
        delta = c * d
        f *= delta
        if abs(delta - 1.0) < eps:
            return f
    raise ArithmeticError(f"betainc: continued fraction did not converge for a={a}, b={b}, x={x}")


def t_cdf(t: float, df: float) -> float:
    """P(T ≤ t) for Student's t with df > 0 degrees of freedom (df need not be an integer: Welch)."""
    if df <= 0:
        raise ValueError(f"t_cdf: df must be > 0, got {df}")
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    tail = 0.5 * betainc(df / 2, 0.5, df / (df + t * t))  # P(T > |t|)
    return 1.0 - tail if t > 0 else tail


@lru_cache(maxsize=1024)  # compare's bands ask for the same (0.975, n − 1) at every step of a curve
def t_quantile(p: float, df: float) -> float:
    """The t with P(T ≤ t) = p (Student's t, df degrees of freedom), by bisection on t_cdf."""
    if not 0 < p < 1:
        raise ValueError(f"t_quantile: p must be in (0, 1), got {p}")
    if p < 0.5:
        return -t_quantile(1 - p, df)
    if p == 0.5:
        return 0.0
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        lo, hi = hi, hi * 2
    for _ in range(200):
        mid = (lo + hi) / 2
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-13 * hi:
            break
    return (lo + hi) / 2


# ---------------------------------------------------------------- power

def _normal_cdf(z: float) -> float:
    return 0.5 * math.erfc(-z / math.sqrt(2))


def power(ncp: float, df: float, alpha: float = ALPHA) -> float:
    """Probability that a two-sided t-test at level alpha rejects when T is noncentral t(df, ncp).

    T = (Z + ncp) / S with S = χ_df / √df, so P(T > c) = E[Φ(ncp − c·S)]; the expectation is a Simpson sum over
    the χ_df density (smooth for df ≥ 1)."""
    if df < 1:
        raise ValueError(f"power: needs df ≥ 1, got {df}")
    c = t_quantile(1 - alpha / 2, df)
    top = math.sqrt(df) + 12.0  # the χ_df density beyond this is below 1e-30
    intervals = 800
    h = top / intervals
    log_norm = math.log(2) - (df / 2) * math.log(2) - math.lgamma(df / 2)
    total = 0.0
    for i in range(intervals + 1):
        u = i * h
        density = math.exp(log_norm + (df - 1) * math.log(u) - u * u / 2) if u > 0 else (
            math.exp(log_norm) if df == 1 else 0.0)
        s = u / math.sqrt(df)
        reject = _normal_cdf(ncp - c * s) + _normal_cdf(-ncp - c * s)
        weight = 1 if i in (0, intervals) else (4 if i % 2 else 2)
        total += weight * density * reject
    return total * h / 3


@lru_cache(maxsize=256)
def _detectable_ncp(df: float, alpha: float, target: float) -> float:
    lo, hi = 0.0, 1.0
    while power(hi, df, alpha) < target:
        lo, hi = hi, hi * 2
    while hi - lo > 1e-6 * hi:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if power(mid, df, alpha) < target else (lo, mid)
    return (lo + hi) / 2


def detectable_effect(se: float, df: float, alpha: float = ALPHA, target: float = POWER) -> float:
    """The smallest true mean (difference) that a two-sided t-test at alpha detects with probability target, for a
    design whose estimate has standard error se and df degrees of freedom; inf when there is no spread estimate."""
    if not df >= 1 or not math.isfinite(se):
        return math.inf
    return _detectable_ncp(float(df), alpha, target) * se


# ---------------------------------------------------------------- estimates

@dataclass(frozen=True)
class Estimate:
    """A mean (or mean difference) with what the design says about its uncertainty."""
    n: int  # observations (pairs, for a paired design)
    mean: float
    sd: float  # of the observations (pairs' differences); nan for n < 2 and for Welch's unpaired difference
    se: float  # standard error of the mean; inf for n < 2
    df: float  # degrees of freedom of the t-interval (Welch–Satterthwaite for unpaired differences)
    design: str  # "one sample", "paired", or "unpaired (Welch)"

    @property
    def half_width(self) -> float:
        """Half the 95 % t-interval: t_{0.975, df} · se."""
        return t_quantile(1 - ALPHA / 2, self.df) * self.se if self.df >= 1 and math.isfinite(self.se) else math.inf

    @property
    def ci95(self) -> tuple:
        return (self.mean - self.half_width, self.mean + self.half_width)

    @property
    def detectable(self) -> float:
        """Smallest true effect this design detects with power 0.8 (two-sided, α = 0.05)."""
        return detectable_effect(self.se, self.df)

    def as_dict(self) -> dict:
        """JSON-safe fields (infinities and nan as null) under the names of the lab's verdict.json; n_seeds counts
        pairs for a paired design, runs over both arms for an unpaired one."""
        def finite(v):
            return v if isinstance(v, (int, float)) and math.isfinite(v) else None
        return {"design": self.design, "n_seeds": self.n, "effect": finite(self.mean), "sd": finite(self.sd),
                "ci95": [finite(v) for v in self.ci95], "detectable_effect": finite(self.detectable)}


def _floats(values, name: str) -> list:
    values = [float(v) for v in values]
    if not values or not all(math.isfinite(v) for v in values):
        raise ValueError(f"{name}: needs at least one value, all finite, got {values}")
    return values


def one_sample(values) -> Estimate:
    """Mean of values with its t-interval (e.g. one configuration's metric over seeds)."""
    values = _floats(values, "one_sample")
    n = len(values)
    mean = math.fsum(values) / n
    if n < 2:
        return Estimate(n, mean, math.nan, math.inf, 0, "one sample")
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    return Estimate(n, mean, sd, sd / math.sqrt(n), n - 1, "one sample")


def paired(a, b) -> Estimate:
    """Mean of the differences a[i] − b[i] (pair i shares a seed: data order, initial weights) with its interval."""
    a, b = _floats(a, "paired"), _floats(b, "paired")
    if len(a) != len(b):
        raise ValueError(f"paired: the arms have {len(a)} and {len(b)} values; each pair needs one of each")
    e = one_sample([x - y for x, y in zip(a, b)])
    return Estimate(e.n, e.mean, e.sd, e.se, e.df, "paired")


def unpaired(a, b) -> Estimate:
    """mean(a) − mean(b) for independent arms, with Welch's interval (unequal variances)."""
    a, b = one_sample(_floats(a, "unpaired")), one_sample(_floats(b, "unpaired"))
    if a.n < 2 or b.n < 2:
        return Estimate(a.n + b.n, a.mean - b.mean, math.nan, math.inf, 0, "unpaired (Welch)")
    va, vb = a.se ** 2, b.se ** 2
    se = math.sqrt(va + vb)
    # Welch–Satterthwaite; with both variances 0 the difference is exact: keep the smaller arm's df
    df = (va + vb) ** 2 / (va ** 2 / (a.n - 1) + vb ** 2 / (b.n - 1)) if se > 0 else min(a.n, b.n) - 1
    return Estimate(a.n + b.n, a.mean - b.mean, math.nan, se, max(df, 1.0), "unpaired (Welch)")


# ---------------------------------------------------------------- verdict

FAMILY_ALPHA = 0.025  # one-sided: a 95 % interval's side is a one-sided test at 0.025; Holm keeps the family there


def p_above(estimate: Estimate, bound: float) -> float:
    """One-sided p-value of "the true mean ≤ bound" (small when the data put the mean above bound)."""
    if not math.isfinite(estimate.se) or estimate.df < 1:
        return 1.0
    if estimate.se == 0:  # every observation equal: the data say exactly where the mean is
        return 0.0 if estimate.mean > bound else 1.0
    return 1.0 - t_cdf((estimate.mean - bound) / estimate.se, estimate.df)


def p_below(estimate: Estimate, bound: float) -> float:
    """One-sided p-value of "the true mean ≥ bound"."""
    flipped = Estimate(estimate.n, -estimate.mean, estimate.sd, estimate.se, estimate.df, estimate.design)
    return p_above(flipped, -bound)


@dataclass(frozen=True)
class Decision:
    verdict: str  # holds | holds_smaller | does_not_hold | inconclusive
    reason: str
    p: float  # one-sided p-value of the test behind the verdict (for Holm); for inconclusive, the "holds" test's


def decide(estimate: Estimate, direction: int = 1, margin: float = 0.0, size: float = None,
           equivalence: bool = False) -> Decision:
    """Decide a claim about the true mean d (in `direction` units: d·direction > 0 is "as claimed") on the 95 %
    interval [lo, hi] alone (each side a one-sided test at 0.025); no observed-power gate.

    superiority (margin 0): holds when lo > 0 — "holds_smaller" when the literature's stated size is given and
        hi < size; does_not_hold when hi < 0 (a significant reversal), or when size is given, the interval holds
        0 and hi < size (no effect shown and the stated size excluded).
    non-inferiority (margin m > 0), two one-sided tests against the margin: holds when lo > −m; does_not_hold
        when hi < −m (worse by more than the margin); else inconclusive.
    equivalence (margin m, both sides): holds when −m < lo and hi < m; does_not_hold when the interval lies
        wholly beyond one margin; else inconclusive."""
    if direction not in (1, -1):
        raise ValueError(f"decide: direction must be +1 or -1, got {direction!r}")
    if margin < 0 or (equivalence and not margin > 0):
        raise ValueError(f"decide: margin must be ≥ 0 (> 0 for equivalence), got {margin}")
    if size is not None and (size <= 0 or margin):
        raise ValueError(f"decide: a literature size must be > 0 in the claimed direction and only for superiority, "
                         f"got size={size}, margin={margin}")
    e = estimate if direction == 1 else Estimate(estimate.n, -estimate.mean, estimate.sd, estimate.se, estimate.df,
                                                 estimate.design)
    lo, hi = e.ci95
    ci = _interval(e) + (" (sign flipped: claimed direction positive)" if direction == -1 else "")
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return Decision("inconclusive", f"no interval from n = {e.n} (needs ≥ 2)", 1.0)
    if equivalence:
        return _equivalence(e, margin, ci)
    if lo > -margin:
        where = f"above −{_num(margin)} (the margin)" if margin else "above 0"
        if size is not None and hi < size:
            return Decision("holds_smaller", f"the 95 % interval {ci} lies {where} and below the literature's "
                                             f"{_num(size)}", p_above(e, 0.0))
        return Decision("holds", f"the 95 % interval {ci} lies {where}", p_above(e, -margin))
    if hi < -margin:
        what = f"worse than the margin −{_num(margin)}" if margin else "the opposite direction"
        below = _num(-margin) if margin else 0
        return Decision("does_not_hold", f"the 95 % interval {ci} lies wholly below {below}: {what}",
                        p_below(e, -margin))
    if size is not None and hi < size:
        return Decision("does_not_hold", f"the 95 % interval {ci} includes 0 and excludes the literature's "
                                         f"{_num(size)}", p_below(e, size))
    return Decision("inconclusive", f"the 95 % interval {ci} straddles {_num(-margin) if margin else 0}" +
                    (f" and includes the literature's {_num(size)}" if size is not None else ""), p_above(e, -margin))


def _equivalence(e: Estimate, margin: float, ci: str) -> Decision:
    lo, hi = e.ci95
    if -margin < lo and hi < margin:
        return Decision("holds", f"the 95 % interval {ci} lies inside ±{_num(margin)}",
                        max(p_above(e, -margin), p_below(e, margin)))
    if hi < -margin or lo > margin:
        side = (p_below(e, -margin), "below") if hi < -margin else (p_above(e, margin), "above")
        return Decision("does_not_hold", f"the 95 % interval {ci} lies wholly {side[1]} the margin "
                                         f"±{_num(margin)}", side[0])
    return Decision("inconclusive", f"the 95 % interval {ci} crosses the margin ±{_num(margin)}",
                    max(p_above(e, -margin), p_below(e, margin)))


def decide_exact(values, bound: float, direction: int, identity: str) -> Decision:
    """An exact outcome (an identity, no sampling noise to speak of): "exact" when every seed's value lies within
    the bound (value·direction ≥ bound·direction), does_not_hold naming the first seed that does not."""
    values = _floats(values, "decide_exact")
    outside = [(i, v) for i, v in enumerate(values) if not direction * (v - bound) >= 0]
    if outside:
        i, v = outside[0]
        return Decision("does_not_hold", f"seed {i}: {v:.6g} is not {'≥' if direction == 1 else '≤'} {bound:.6g} "
                                         f"({identity})", math.nan)
    return Decision("exact", f"all {len(values)} seeds {'≥' if direction == 1 else '≤'} {bound:.6g}: {identity}",
                    math.nan)


def holm(pvalues) -> list:
    """Holm's step-down adjusted p-values (Holm 1979), in the input's order: the i-th smallest of m becomes
    max over j ≤ i of min(1, (m − j + 1)·p_(j))."""
    pvalues = [float(p) for p in pvalues]
    order = sorted(range(len(pvalues)), key=pvalues.__getitem__)
    adjusted, running = [0.0] * len(pvalues), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(pvalues) - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def holm_verdicts(verdicts, pvalues, alpha: float = FAMILY_ALPHA) -> tuple:
    """(verdicts, adjusted p-values or None): each decided verdict kept where its Holm-adjusted p ≤ alpha, else
    "inconclusive"; exact outcomes (and verdicts without a p-value) are counted apart and left as they are."""
    family = [i for i, (v, p) in enumerate(zip(verdicts, pvalues)) if v != "exact" and p is not None
              and math.isfinite(p)]
    adjusted = dict(zip(family, holm([pvalues[i] for i in family])))
    return [v if i not in adjusted or v == "inconclusive" or adjusted[i] <= alpha else "inconclusive"
            for i, v in enumerate(verdicts)], [adjusted.get(i) for i in range(len(verdicts))]


def _num(x: float) -> str:
    return f"{x:.3g}" if math.isfinite(x) else str(x)


def _interval(e: Estimate) -> str:
    lo, hi = e.ci95
    return f"[{_num(lo)}, {_num(hi)}]"


def summary(e: Estimate) -> str:
    """'+0.0123 ± 0.0045 (95 % CI, paired, n = 3)' for tables and notes."""
    if not math.isfinite(e.half_width):
        return f"{e.mean:+.4g} (n = {e.n}, no interval)"
    return f"{e.mean:+.4g} ± {e.half_width:.2g} (95 % CI, {e.design}, n = {e.n})"
