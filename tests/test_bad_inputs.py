"""Every user mistake: one line naming the key, the value and what is allowed; exit code 2; no traceback;
nothing of an existing run touched. Runs the real `deeprob` dispatcher in-process (the same code as the CLI)."""
import pickle
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from deeprob_cli.__main__ import main

from conftest import tree_digest
from test_data import write_cifar10, write_folder

SYN = ["dataset=synthetic", "trainer.epochs=1", "log.hist_every=0"]


def deeprob(*args, monkeypatch, capsys):
    """(exit code, stderr) of `deeprob ARGS`."""
    monkeypatch.setattr(sys, "argv", ["deeprob", *map(str, args)])
    try:
        code = main()
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A folder holding one finished run and the broken data sets the table points at."""
    root = tmp_path_factory.mktemp("bad")
    write_cifar10(root / "corrupt")
    (root / "corrupt" / "cifar-10-batches-py" / "data_batch_2").write_bytes(b"\x80\x04garbage")
    write_cifar10(root / "truncated")
    batch = root / "truncated" / "cifar-10-batches-py" / "data_batch_4"
    batch.write_bytes(batch.read_bytes()[:300])
    write_cifar10(root / "evil")

    class Payload:
        def __reduce__(self):
            return (open, (str(root / "PWNED"), "w"))

    with open(root / "evil" / "cifar-10-batches-py" / "data_batch_1", "wb") as f:
        pickle.dump({b"data": Payload(), b"labels": [0]}, f)
    write_folder(root / "unreadable", "train", ["a", "b"], 3)
    (root / "unreadable" / "train" / "b" / "broken.png").write_bytes(b"\x89PNG not really")
    write_folder(root / "emptyclass", "train", ["a", "b"], 3)
    (root / "emptyclass" / "train" / "c").mkdir()
    write_folder(root / "mixed", "train", ["a", "b"], 3)
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(root / "mixed" / "train" / "a" / "small.png")
    write_folder(root / "testclasses", "train", ["a", "b"], 3)
    write_folder(root / "testclasses", "test", ["a", "c"], 1)
    (root / "notrain").mkdir()
    (root / "norun").mkdir()
    torch.save({"model": {}}, root / "foreign.pt")
    return root


@pytest.fixture(scope="module")
def finished_run(workdir):
    import subprocess

    from conftest import REPO

    subprocess.run([sys.executable, "-m", "deeprob_cli", "train", *SYN, "hydra.run.dir=done"], cwd=workdir, check=True,
                   capture_output=True, env={**__import__("os").environ, "PYTHONPATH": str(REPO)})
    run = workdir / "done"
    (run / "evil").mkdir()
    (run / "evil" / "checkpoints").mkdir()

    class Payload:
        def __reduce__(self):
            return (open, (str(workdir / "PWNED"), "w"))

    torch.save({"format": "deeprob-checkpoint/1", "x": Payload()}, run / "evil" / "checkpoints" / "last.pt")
    (run / "torn" / "checkpoints").mkdir(parents=True)
    last = (run / "checkpoints" / "last.pt").read_bytes()
    (run / "torn" / "checkpoints" / "last.pt").write_bytes(last[: len(last) // 2])
    (run / "foreign" / "checkpoints").mkdir(parents=True)
    (run / "foreign" / "checkpoints" / "last.pt").write_bytes((workdir / "foreign.pt").read_bytes())
    return run


BAD = [  # (arguments, what the one line must say)
    (["train", "activation=relux"], "activation=relux: no such option; choose from elu, gelu"),
    (["train", "augment=[flip,crp]"], "augment=crp: no such option; choose from color_jitter, crop"),
    (["train", "-m", "init=xavier,kaimin"], "init=kaimin: no such option"),
    (["train", "activation.aproximate=tanh"], "activation.aproximate: no such key"),
    (["train", "optim.lr=interval(0.1"], "cannot read the overrides"),
    (["train", "trainer.epochs=0"], "trainer.epochs: 0 is not allowed; expected a positive integer"),
    (["train", "trainer.epochs=abc"], "trainer.epochs: 'abc' is not allowed; expected a positive integer"),
    (["train", "trainer.batch_size=-5"], "trainer.batch_size: -5 is not allowed"),
    (["train", "trainer.device=tpu"], "trainer.device: 'tpu' is not allowed; expected auto, cpu or cuda"),
    (["train", "optim.lr=0"], "optim.lr: 0 is not allowed; expected a number in (0, "),
    (["train", "optim.lr=fast"], "optim.lr: 'fast' is not allowed"),
    (["train", "dataset.val_size=-1"], "dataset.val_size: -1 is not allowed"),
    (["train", "dataset.subset=0"], "dataset.subset: 0 is not allowed; expected null or a positive integer"),
    (["train", "dataset.subset=5000"], "dataset.subset: 5000 is larger than the 768 training images"),
    (["train", "log.hist_every=-1"], "log.hist_every: -1 is not allowed"),
    (["train", "trainer.checkpoint_every=-2"], "trainer.checkpoint_every: -2 is not allowed"),
    (["train", "init=normal", "init.std=abc"], "init.std: 'abc' is not allowed; expected a number ≥ 0"),
    (["train", "model=mlp", "model.width=64.5"], "model.width: 64.5 is not allowed; expected a positive integer"),
    (["train", "augment=flip", "augment.flip.p=2"], "augment.flip.p: 2 is not allowed; expected a probability"),
    (["train", "augment=crop", "augment.crop.padding=-1"], "augment.crop.padding: -1 is not allowed"),
    (["train", "regularizer=dropout", "regularizer.dropout.p=1.5"], "regularizer.dropout.p: 1.5 is not allowed"),
    (["train", "regularizer=mixup", "regularizer.mixup.alpha=-1"], "regularizer.mixup.alpha: -1 is not allowed"),
    (["train", "regularizer=stochastic_depth"], "regularizer=stochastic_depth: needs residual blocks"),
    (["train", "model.widths=[4]", "regularizer=dropconnect"], "regularizer=dropconnect"),
    (["train", "model.widths=[4]", "preprocess=pca"], "preprocess: pca gives component coordinates"),
    (["train", "model=resnet", "model.depth=8", "activation=swiglu"], "model=resnet: a gated activation cannot"),
    (["train", "tta=multicrop", "tta.size=2.0"], "tta.size: 2.0 is not allowed"),
    (["train", "dataset=cifar10", "dataset.download=false", "dataset.root=nowhere"], "dataset.root: no CIFAR-10 at"),
    (["train", "dataset=cifar10", "dataset.root={w}/corrupt"], "data_batch_2 is not a readable CIFAR-10 batch file"),
    (["train", "dataset=cifar10", "dataset.root={w}/truncated"], "data_batch_4 is not a readable CIFAR-10 batch file"),
    (["train", "dataset=cifar10", "dataset.root={w}/evil"], "refusing to load io.open"),
    (["train", "dataset=image_folder"], "dataset.root: not set"),
    (["train", "dataset=image_folder", "dataset.root={w}/notrain"], "has no train/ folder"),
    (["train", "dataset=image_folder", "dataset.root={w}/unreadable", "dataset.val_size=2"],
     "cannot read image {w}/unreadable/train/b/broken.png"),
    (["train", "dataset=image_folder", "dataset.root={w}/emptyclass", "dataset.val_size=2"], "/train/c holds no"),
    (["train", "dataset=image_folder", "dataset.root={w}/mixed", "dataset.val_size=2"], "all images of one dataset"),
    (["train", "dataset=image_folder", "dataset.root={w}/testclasses", "dataset.val_size=2"], "differ from those of"),
    (["train", "hydra.run.dir={w}/done"], "hydra.run.dir: {w}/done already holds a run"),
    (["train", "resume={w}/norun"], "resume: {w}/norun is not a run folder"),
    (["eval", "{w}/done/evil"], "is not a loadable deeprob checkpoint"),
    (["eval", "{w}/done/torn"], "is not a loadable deeprob checkpoint"),
    (["eval", "{w}/done/foreign"], "is not a deeprob checkpoint"),
    (["eval", "{w}/done", "split=train"], "split: 'train' is not allowed; expected one of val, test"),
    (["eval", "{w}/done", "splt=val"], "unknown option 'splt'"),
    (["compare", "{w}/norun"], "compare: no run folders"),
    (["frobnicate"], "unknown command 'frobnicate'"),
    # numbers that would crash (or silently mislead) later are refused before anything runs
    (["train", "optim.lr=1e308"], "optim.lr: 1e+308 is not allowed; expected a number in (0, 3.4e+38]"),
    (["train", "init=normal", "init.std=nan"], "init.std: nan is not allowed; expected a number ≥ 0"),
    (["train", "trainer.seed=-1"], "trainer.seed: -1 is not allowed; expected an integer in [0, "),
    (["train", "schedule=onecycle", "schedule.div=0"], "schedule.div: 0 is not allowed; expected a number > 0"),
    (["train", "schedule=onecycle", "schedule.final_div=-1"], "schedule.final_div: -1 is not allowed"),
    (["train", "schedule.warmup=1.5"], "schedule.warmup: 1.5 is not allowed; expected a fraction of all steps in [0, 1]"),
    (["train", "schedule=linear", "schedule.start=-0.1"], "schedule.start: -0.1 is not allowed; expected a number ≥ 0"),
    (["train", "schedule=linear", "schedule.peak=0"], "schedule.peak: 0 is not allowed; expected a number > 0"),
    (["train", "schedule=linear", "schedule.end=-1"], "schedule.end: -1 is not allowed; expected a number ≥ 0"),
    (["train", "model=mlp", "model.width=null"], "model.width: None is not allowed; expected a positive integer"),
    (["train", "trainer.eval_batch_size=0"], "trainer.eval_batch_size: 0 is not allowed; expected a positive"),
    (["train", "trainer.threads=0"], "trainer.threads: 0 is not allowed; expected null or a positive integer"),
    (["train", "trainer.sync_bn=3"], "trainer.sync_bn: 3 is not allowed; expected true or false"),
    (["train", "trainer.precision=fp16"], "trainer.precision: 'fp16' is not allowed; expected one of auto, bf16"),
    (["train", "trainer.channels_last=sometimes"], "trainer.channels_last: 'sometimes' is not allowed"),
    (["train", "trainer.compile=3"], "trainer.compile: 3 is not allowed; expected true or false"),
    (["train", "log.progress=maybe"], "log.progress: 'maybe' is not allowed; expected one of auto, true, false"),
    # run folders that cannot be made: one line naming the folder and the cause
    (["train", "hydra.run.dir=/proc/deeprob"], "cannot create or write the run folder /proc/deeprob (No such file"),
    (["train", f"hydra.run.dir=runs/{'x' * 300}"], "(File name too long); choose a shorter name"),
    (["train", "hydra.run.dir={w}/done/checkpoints/last.pt/run"], "cannot create or write the run folder"),
    # resume: our own line, not Hydra's "use +model=mlp"
    (["train", "resume={w}/done", "model=mlp"], "resume: model=mlp chooses another option; a resumed run keeps"),
    (["train", "resume={w}/done", "-m"], "resume: continues one run"),
    # deeprob eval
    (["eval", "{w}/done", "trainer.eval_batch_size=0"], "trainer.eval_batch_size: 0 is not allowed"),
    (["eval", "{w}/done", "trainer.eval_batch_size=-1"], "trainer.eval_batch_size: -1 is not allowed"),
    (["eval", "{w}/done", "trainer.device=tpu"], "trainer.device: 'tpu' is not allowed; expected auto, cpu or cuda"),
]
if not torch.cuda.is_available():  # a CUDA device asked for on a machine without one
    BAD += [(["train", "trainer.device=cuda"], "trainer.device: 'cuda' asked for, but this machine has no CUDA"),
            (["eval", "{w}/done", "trainer.device=cuda"], "trainer.device: 'cuda' asked for, but this machine has no")]


@pytest.mark.parametrize("args, expected", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_one_line_exit_2_and_touches_nothing(args, expected, workdir, finished_run, monkeypatch, capsys):
    monkeypatch.chdir(workdir)
    before = tree_digest(finished_run)
    args = [a.replace("{w}", str(workdir)) for a in args]
    if args[0] == "train":
        args = ["train", *SYN, *args[1:]]
    code, err = deeprob(*args, monkeypatch=monkeypatch, capsys=capsys)
    lines = err.strip().splitlines()
    assert code == 2, err
    assert lines and ": error: " in lines[-1] and expected.replace("{w}", str(workdir)) in lines[-1], err
    assert "Traceback" not in err
    assert tree_digest(finished_run) == before
    assert not (workdir / "PWNED").exists()  # no pickled payload ever ran
    assert not (workdir / "runs").exists()  # a refused command leaves no run folder behind (not even runs/)


def test_every_setting_and_every_declared_range_has_a_row():
    """The validator's messages are all exercised: a new key in config.SETTINGS, or a new parameter with a declared
    range in the schedules, without a row above fails here."""
    import inspect
    import typing

    from deeprob_cli.components import schedule
    from deeprob_cli.config import SETTINGS
    from deeprob_cli.validate import Range

    rows = [" ".join(args) for args, _ in BAD]
    keys = list(SETTINGS)
    for name, function in inspect.getmembers(schedule, inspect.isfunction):
        if function.__module__ == schedule.__name__ and not name.startswith("_"):
            for param, hint in typing.get_type_hints(function, include_extras=True).items():
                if any(isinstance(m, Range) for m in getattr(hint, "__metadata__", ())):
                    keys.append(f"schedule.{param}")
    missing = sorted({key for key in keys if not any(f"{key}=" in row for row in rows)})
    assert missing == []
