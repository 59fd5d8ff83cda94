"""The lab's bench: data, models and a small training loop shared by the claims. Try: deeprob lab relu_speed dataset=synthetic lab.scale=0.05

Every model comes from deeprob_cli.assemble.assemble (the recipe `deeprob train` uses), every input from the
composed config's dataset and preprocess options (fitted on the claim's training subset, as train.py fits them
on its training split). The loop is plain SGD with momentum, without schedule or weight decay, because the
claims need what `deeprob train` does not log: training error over the whole subset every few steps, stopping at
a target, per-unit gradients over a full pass. A seed fixes the initial weights (torch.manual_seed before
assemble), the data order and the augmentation draws, so the arms of one seed form a pair.
"""
import math
import time
from dataclasses import dataclass, field
from functools import lru_cache

import torch
import torch.nn.functional as F

from .. import UserError
from ..config import build, compose_checked, selected

# keys the lab's own loop sets from a claim's design: an override of them would be silently ignored
DESIGN_KEYS = ("dataset.subset", "trainer.epochs", "trainer.batch_size", "trainer.seed", "optim", "schedule")


def override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def refuse_compared(name: str, compares, overrides):
    """One line for an override of a key the claim varies itself (or the design sets); none otherwise."""
    for o in overrides:
        key = override_key(o)
        for owned in (*compares, *DESIGN_KEYS):
            if key == owned or key.startswith(owned + "."):
                what = ("the claim compares " + ", ".join(compares) + " itself") if owned in compares else \
                    "the claim's design sets it (scale the design with lab.scale=F, the seeds with lab.seeds=N)"
                raise UserError(f"{key}: cannot be overridden in `deeprob lab {name}`: {what}; drop `{o}`, "
                                f"or run `deeprob train {o} ...` for one setting")


class PremiseNotMet(Exception):
    """The design's regime is not there (measured on the first seed): the comparisons would decide nothing."""


_COMPOSED = {}  # (arm + overrides) -> config, per process: composing costs ≈0.1 s, once per arm, not per seed


class Spec:
    """What a sub-run in a worker process needs to compose configs: picklable, unlike a Context (its log)."""

    def __init__(self, name: str, overrides, scale: float):
        self.name, self.overrides, self.scale = name, list(overrides), scale

    def cfg(self, *arm):
        """The real conf/ tree composed with the claim's arm, then the user's overrides (which may not touch
        the compared keys: refuse_compared)."""
        train = tuple(o for o in self.overrides if not override_key(o).startswith("init_stats."))  # init_depth's
        if (*arm, *train) not in _COMPOSED:
            _COMPOSED[(*arm, *train)] = compose_checked("train", [*arm, *train])
        return _COMPOSED[(*arm, *train)]

    def n(self, count: int, least: int = 2) -> int:
        """A design size (steps, images) times lab.scale, at least `least`."""
        return max(least, int(round(count * self.scale)))


def _one_thread():
    torch.set_num_threads(1)


_POOLS = {}  # workers -> a process pool kept for the whole process: starting one costs an import of torch each


def pool(workers: int):
    """The process pool of `workers` workers, one torch thread each (started on first use, then reused)."""
    if workers not in _POOLS:
        import atexit
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # spawn, not fork: a forked child of a process that has run torch may inherit a held OpenMP lock
        _POOLS[workers] = ProcessPoolExecutor(workers, multiprocessing.get_context("spawn"), initializer=_one_thread)
        atexit.register(_POOLS[workers].shutdown)
    return _POOLS[workers]


def _call(job):
    fn, args = job
    return fn(*args)


class Context(Spec):
    """What a claim's measure needs: its folder, the user's overrides, seeds, scale, composition, the premise
    check and a map over sub-runs that uses both cores."""

    def __init__(self, name: str, overrides, folder, scale: float = 1.0, seeds: int = 5, log=print,
                 workers: int = 1, premise: str = ""):
        super().__init__(name, overrides, scale)
        self.folder, self.seeds, self.log, self.workers = folder, list(range(seeds)), log, workers
        self.notes = []  # what the run itself decided (pilot lr, censoring, diverged runs): into verdict.json
        self.premise_statement, self.premise_result = premise, None

    def spec(self) -> Spec:
        return Spec(self.name, self.overrides, self.scale)

    def note(self, text: str):
        self.notes.append(text)
        self.log(f"[lab {self.name}] {text}")

    def premise(self, met: bool, measured: str):
        """Record the premise measured on the first seed; abort the claim (PremiseNotMet) when it is not met."""
        self.premise_result = {"statement": self.premise_statement, "met": bool(met), "measured": measured}
        self.log(f"[lab {self.name}] premise {'met' if met else 'NOT met'}: {measured}")
        if not met:
            raise PremiseNotMet(measured)

    def map(self, fn, jobs) -> list:
        """[fn(*job) for job in jobs], `workers` at a time in worker processes with one torch thread each; fn
        must be a module-level function. Each sub-run draws everything from its own seeds, so the results equal
        the one-by-one ones exactly (tests/test_lab.py compares them)."""
        jobs = [tuple(job) for job in jobs]
        if self.workers <= 1 or len(jobs) < 2:
            return [fn(*job) for job in jobs]
        return list(pool(self.workers).map(_call, [(fn, job) for job in jobs]))

    def premised(self, fn, jobs_of, check) -> dict:
        """{seed: [fn(*job) for job in jobs_of(seed)]}, the first seed's jobs first: check(its results) gives
        (met, measured) for the premise, and only when it is met do the other seeds run (two at a time)."""
        first, rest = self.seeds[0], self.seeds[1:]
        results = {first: self.map(fn, jobs_of(first))}
        self.premise(*check(results[first]))
        flat = self.map(fn, [job for seed in rest for job in jobs_of(seed)])
        k = len(jobs_of(first))
        return {**results, **{seed: flat[i * k:(i + 1) * k] for i, seed in enumerate(rest)}}


# ---------------------------------------------------------------- data

@lru_cache(maxsize=2)
def _data(dataset_yaml: str):
    from omegaconf import OmegaConf

    from ..data import load_data

    cfg = OmegaConf.create(dataset_yaml)
    cfg.subset = None  # the claim takes its own subset
    return load_data(cfg)


@dataclass
class Setting:
    """A claim's training subset and validation images with the preprocessing fitted on that subset."""
    train: object  # data.Split (uint8)
    val: object
    classes: list
    preprocess: object
    shape: tuple = field(init=False)

    def __post_init__(self):
        self.shape = tuple(self.preprocess.output_shape(tuple(self.train.images.shape[1:])))

    def x(self, split, index=slice(None)):
        """Preprocessed float inputs of split[index], as train.py feeds them (no augmentation)."""
        return self.preprocess(split.images[index].float().div(255))


def setting(cfg, n_train: int, n_val: int = 0) -> Setting:
    """The first n_train training images (fewer where the data set has fewer) and n_val validation images."""
    from omegaconf import OmegaConf

    data = _data(OmegaConf.to_yaml(cfg.dataset))
    train = data.train.take(slice(0, min(n_train, len(data.train))))
    val = data.val.take(slice(0, min(n_val, len(data.val)))) if data.val is not None and n_val else None
    preprocess = build(cfg.preprocess, "preprocess").fit(train.images)
    return Setting(train, val, list(data.classes), preprocess)


def assemble_model(cfg, s: Setting, seed: int):
    """deeprob's assembly of cfg for the setting's inputs, initial weights drawn from seed."""
    from ..assemble import assemble

    torch.manual_seed(seed)
    return assemble(cfg, s.shape, len(s.classes), batch=s.x(s.train, slice(0, 256)))


def augmenter(cfg, s: Setting):
    from ..components.augment import compose

    augment = compose(build(node, f"augment.{name}") for name, node in selected(cfg, "augment").items())
    return augment.fit(s.train.images)


# ---------------------------------------------------------------- training

@dataclass
class History:
    losses: list = field(default_factory=list)  # per step
    checks: list = field(default_factory=list)  # (step, watched value)
    diverged: int | None = None  # the step whose loss was not finite
    stopped: int | None = None  # the step at which stop() said enough
    seconds: float = 0.0


def fit(assembly, s: Setting, *, steps: int, lr: float, seed: int, batch: int = 64, augment=None,
        every: int = 0, watch=None, stop=None, momentum: float = 0.9, anneal: bool = False) -> History:
    """SGD (momentum) on s.train for `steps` steps; every `every` steps `watch(model)` is recorded and `stop(value)`
    may end the run. A non-finite loss ends it too (History.diverged). anneal: the lr falls linearly to 0 over the
    steps, so the run ends converged rather than at a noisy last step of a constant lr."""
    model, mix, loss_fn = assembly.model.train(), assembly.regularizers.mix, assembly.regularizers.loss
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: 1 - k / steps if anneal else 1.0)
    order_g, noise_g = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 10_000)
    images, labels = s.train.images, s.train.labels
    batch = min(batch, len(labels))
    history, order, at, started = History(), torch.empty(0, dtype=torch.long), 0, time.perf_counter()
    for step in range(steps):
        if at + batch > len(order):  # a new epoch: a fresh permutation, drawn from the pair's shared generator
            order, at = torch.randperm(len(labels), generator=order_g), 0
        index = order[at:at + batch]
        at += batch
        x = images[index].float().div_(255)
        x = s.preprocess(augment(x, noise_g) if augment is not None else x)
        x, targets, _ = mix(x, labels[index], noise_g, step)
        loss = loss_fn(model(x), targets) + assembly.regularizers.penalty(model)
        if not torch.isfinite(loss):
            history.diverged = step
            break
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        history.losses.append(loss.item())
        if every and watch is not None and (step + 1) % every == 0:
            value = watch(model)
            model.train()
            history.checks.append((step + 1, value))
            if stop is not None and stop(value):
                history.stopped = step + 1
                break
    history.seconds = time.perf_counter() - started
    return history


@torch.no_grad()
def scores(model, s: Setting, split, batch: int = 1000) -> dict:
    """error, accuracy, mean cross-entropy (NLL) and the logits of the whole split, in eval mode."""
    model.eval()
    logits = torch.cat([model(s.x(split, slice(i, i + batch))) for i in range(0, len(split), batch)])
    finite = torch.isfinite(logits).all().item()
    nll = F.cross_entropy(logits, split.labels).item() if finite else math.inf
    acc = (logits.argmax(1) == split.labels).float().mean().item() if finite else 1 / logits.shape[1]
    return {"acc": acc, "error": 1 - acc, "nll": nll, "logits": logits}


def training_error(s: Setting):
    """watch(): the error over the whole training subset (eval mode), the quantity Krizhevsky et al. plot."""
    return lambda model: scores(model, s, s.train)["error"]


def calibration_error(logits, labels, bins: int = 15) -> float:
    """Expected calibration error: Σ_bins (n_bin / n) · |accuracy − mean confidence| (Guo et al. 2017, eq. 3)."""
    confidence, predicted = logits.softmax(1).max(1)
    correct = (predicted == labels).float()
    edges = torch.linspace(0, 1, bins + 1)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (confidence > lo) & (confidence <= hi)
        if inside.any():
            total += inside.float().mean().item() * abs(correct[inside].mean().item() - confidence[inside].mean().item())
    return total


# ---------------------------------------------------------------- figures

def figure(*shape, size=(6, 4)):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(*shape, figsize=size, squeeze=False)
    return fig, axes


def save(fig, folder, title: str, name: str = "figure.png"):
    import matplotlib.pyplot as plt

    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(folder / name, dpi=100)
    plt.close(fig)


def bars(ax, groups: dict, ylabel: str):
    """Grouped bars: {arm: [value per seed]} as mean with the seeds as dots."""
    for i, (label, values) in enumerate(groups.items()):
        finite = [v for v in values if math.isfinite(v)]
        ax.bar(i, sum(finite) / max(len(finite), 1), color="lightsteelblue")
        ax.plot([i] * len(finite), finite, "k.", markersize=6)
    ax.set_xticks(range(len(groups)), list(groups), rotation=20, fontsize=8)
    ax.set(ylabel=ylabel)
