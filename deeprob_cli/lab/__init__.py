"""`deeprob lab CLAIM [overrides]`: one claim of the lecture decided by one command, with a figure and a verdict.

    deeprob lab --list
    deeprob lab relu_speed dataset=image_folder dataset.root=/tmp/data/cifar10-jpeg
    deeprob lab dropout dataset=synthetic lab.scale=0.05      # every design size × 0.05: a smoke test
    deeprob lab --all dataset=image_folder dataset.root=PATH out=runs/lecture     # what `make lecture` runs

Each claim (activations.py, initialization.py, inputs.py, regularization.py) is declared with @claim next to its
measure: the lecture's sentence, the design, its planned seeds and premise, the keys it compares, and per
comparison the kind of test, the expected direction, a margin or the literature's size with its source — fixed
before any run. The measure trains or probes models built by deeprob's own assembly (bench.py) over paired seeds,
two sub-runs at a time, and returns per-seed numbers; claim.py turns them into estimates, 95 % intervals,
one-sided p-values and a verdict (holds / holds_smaller / does_not_hold / inconclusive, exact for identities)
with deeprob_cli.stats; runner.py runs claims, report.py writes REPORT.md (Holm-adjusted headline). The claim's
folder (default runs/lab/<claim>/<date>/<time>, or out=PATH) receives figure.png, the numbers as TensorBoard
scalars and verdict.json.
"""
from . import activations, initialization, inputs, regularization  # noqa: F401  (each registers its claims)
from .claim import CLAIMS, Claim, Test, decide_claim, judge, overall  # noqa: F401
from .runner import USAGE, main, parse, run_claim  # noqa: F401
