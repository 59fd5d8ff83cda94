"""Opening a run folder somebody else made (eval, plot activations, resume) runs no code and changes nothing
outside it: the folders here are crafted the way an attacker would craft them, and each test checks that a
marker file never appears, that a victim file outside the folder keeps its content, and that the refusal is one
line naming the key."""
import hashlib
import json
import pickle
import shutil

import pytest
import torch
import yaml

from conftest import run_cli, run_dirs
from test_data import write_cifar10

TINY = ["dataset=cifar10", "dataset.download=false", "dataset.val_size=6", "model=mlp", "model.width=8",
        "trainer.epochs=1", "trainer.batch_size=8", "log.hist_every=0", "augment=none", "regularizer=none"]


class Payload:
    """Unpickling this creates the marker file: what `torch.load(..., weights_only=False)` of a crafted file runs."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A real run of deeprob train on a tiny CIFAR-10 in the official format (the folder an attacker starts from)."""
    home = tmp_path_factory.mktemp("made")
    write_cifar10(home / "data")
    run_cli("train", *TINY, f"dataset.root={home / 'data'}", cwd=home)
    (run,) = run_dirs(home / "runs")
    return run


@pytest.fixture
def crafted(made, tmp_path):
    """A copy of the run to tamper with, the user's own data in ./data, a marker path and a victim file."""
    run = tmp_path / "shared_run"
    shutil.copytree(made, run)
    (run / ".lock").unlink(missing_ok=True)
    write_cifar10(tmp_path / "data")
    victim = tmp_path / "home" / "authorized_keys"
    victim.parent.mkdir()
    victim.write_text("ssh-ed25519 AAAA the user's own key\n")
    return run, tmp_path / "MARKER", victim


def edit_checkpoint(run, change):
    path = run / "checkpoints" / "last.pt"
    state = torch.load(path, weights_only=True)
    change(state["config"])
    torch.save(state, path)


def edit_record(run, change, name="config.yaml"):
    path = run / ".hydra" / name
    config = yaml.safe_load(path.read_text())
    change(config)
    path.write_text(yaml.safe_dump(config))


def unfinished(run):
    """The run as one stopped mid-way, so that resume=RUN_DIR continues it."""
    summary = json.loads((run / "summary.json").read_text())
    summary["status"] = "interrupted"
    (run / "summary.json").write_text(json.dumps(summary))


def opener(marker):
    return {"_target_": "builtins.open", "file": str(marker), "mode": "w"}


def torch_load(run, marker):
    """torch.load of a pickle placed in the run folder, with weights_only=False: Hydra's blocklist lets it pass."""
    with open(run / "weights.pkl", "wb") as f:
        pickle.dump(Payload(marker), f)
    return {"_target_": "torch.load", "f": str(run / "weights.pkl"), "weights_only": False}


ATTACKS = {  # where in the config a crafted callable sits: the run's option, a parameter's value, a new group
    "option": lambda cfg, run, marker: cfg.update(activation=opener(marker)),
    "torch_load": lambda cfg, run, marker: cfg.update(activation=torch_load(run, marker)),
    "nested": lambda cfg, run, marker: cfg.update(model={"_target_": "deeprob_cli.models.ConvNet",
                                                          "widths": [opener(marker)]}),
    "args": lambda cfg, run, marker: cfg.update(activation={**cfg["activation"], "_args_": [opener(marker)]}),
    "new_regularizer": lambda cfg, run, marker: cfg.update(regularizer={"dropout": opener(marker)}),
}


def refused(result, key):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr and key in lines[0], result.stderr
    assert "deeprob's own" in lines[0] or "link" in lines[0], lines[0]


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_eval_of_a_crafted_checkpoint_runs_no_code(crafted, attack):
    run, marker, _ = crafted
    edit_checkpoint(run, lambda cfg: ATTACKS[attack](cfg, run, marker))
    result = run_cli("eval", run, cwd=run.parent, check=False)
    assert not marker.exists()
    refused(result, "last.pt")
    assert not (run / "eval.json").exists()


@pytest.mark.parametrize("attack", ["option", "torch_load", "args"])
def test_plot_activations_in_a_crafted_folder_runs_no_code(crafted, attack):
    run, marker, _ = crafted
    shutil.rmtree(run / "checkpoints")  # plot reads only .hydra/
    edit_record(run, lambda cfg: ATTACKS[attack](cfg, run, marker))
    result = run_cli("plot", "activations", cwd=run, check=False)
    assert not marker.exists()
    refused(result, "activation")


@pytest.mark.parametrize("attack", sorted(ATTACKS) + ["hydra_callback", "defaults"])
def test_resume_of_a_crafted_folder_runs_no_code(crafted, attack):
    run, marker, _ = crafted
    unfinished(run)
    if attack == "hydra_callback":  # Hydra instantiates callbacks from the primary config before any job runs
        edit_record(run, lambda cfg: cfg.update(hydra={"callbacks": {"x": opener(marker)}}))
    elif attack == "defaults":  # a defaults list pulling a config group file placed in the folder
        (run / ".hydra" / "evil").mkdir()
        (run / ".hydra" / "evil" / "x.yaml").write_text(
            "# @package _global_\n" + yaml.safe_dump({"hydra": {"callbacks": {"x": opener(marker)}}}))
        edit_record(run, lambda cfg: cfg.update(defaults=[{"evil": "x"}, "_self_"]))
    else:
        for edit in (edit_checkpoint, edit_record):  # both agree, as an attacker makes them
            edit(run, lambda cfg: ATTACKS[attack](cfg, run, marker))
    result = run_cli("train", f"resume={run}", cwd=run.parent, check=False)
    assert not marker.exists()
    refused(result, "config.yaml")


def test_an_untouched_shared_run_still_evaluates_plots_and_resumes(crafted):
    run, marker, victim = crafted
    result = run_cli("eval", run, cwd=run.parent)
    assert json.loads((run / "eval.json").read_text())["n"] == 6, result.stderr
    run_cli("plot", "activations", cwd=run)
    assert (run / "activations.png").stat().st_size > 10_000
    unfinished(run)
    edit_record(run, lambda cfg: cfg["trainer"].update(epochs=2))
    edit_checkpoint(run, lambda cfg: cfg["trainer"].update(epochs=2))
    run_cli("train", f"resume={run}", cwd=run.parent)
    assert json.loads((run / "summary.json").read_text())["status"] == "completed"


def _poisoned_dataset(tmp_path, victim):
    """A dataset config that makes a download replace `victim`: its folder as root, a file:// url named like it and
    the payload's own MD5."""
    payload = tmp_path / "srv" / victim.name
    payload.parent.mkdir()
    payload.write_text("ssh-ed25519 AAAA the attacker's key\n")
    return {"name": "cifar10", "root": str(victim.parent), "download": True, "url": payload.as_uri(),
            "md5": hashlib.md5(payload.read_bytes()).hexdigest()}


def test_eval_never_downloads_or_writes_where_the_checkpoint_says(crafted, tmp_path):
    run, _, victim = crafted
    before = victim.read_bytes()
    dataset = _poisoned_dataset(tmp_path, victim)
    edit_checkpoint(run, lambda cfg: cfg["dataset"].update(dataset))
    result = run_cli("eval", run, cwd=tmp_path, check=False)
    assert victim.read_bytes() == before and sorted(p.name for p in victim.parent.iterdir()) == [victim.name]
    # the user's own data (./data, conf/dataset/cifar10.yaml's root) was read instead
    assert result.returncode == 0, result.stderr
    assert json.loads((run / "eval.json").read_text())["n"] == 6


def test_resume_never_downloads_where_the_run_folder_says(crafted, tmp_path):
    run, _, victim = crafted
    before = victim.read_bytes()
    unfinished(run)
    dataset = _poisoned_dataset(tmp_path, victim)
    for edit in (edit_checkpoint, edit_record):
        edit(run, lambda cfg: cfg["dataset"].update(dataset))
    result = run_cli("train", f"resume={run}", cwd=tmp_path, check=False)
    assert victim.read_bytes() == before and sorted(p.name for p in victim.parent.iterdir()) == [victim.name]
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "dataset.root" in result.stderr


@pytest.mark.parametrize("name", ["train.log", "summary.json", "eval.json", ".lock", "checkpoints"])
def test_a_link_in_a_shared_run_folder_is_never_written_through(crafted, name):
    run, _, victim = crafted
    before = victim.read_bytes()
    unfinished(run)
    target = victim.parent if name == "checkpoints" else victim
    if name == "checkpoints":
        shutil.copytree(run / "checkpoints", victim.parent / "checkpoints")
        before_dir = sorted(p.name for p in (victim.parent / "checkpoints").iterdir())
        shutil.rmtree(run / "checkpoints")
        target = victim.parent / "checkpoints"
    else:
        (run / name).unlink(missing_ok=True)
    (run / name).symlink_to(target)
    for command in (["eval", run], ["train", f"resume={run}"]):
        result = run_cli(*command, cwd=run.parent, check=False)
        assert result.returncode == 2 and "link" in result.stderr and "Traceback" not in result.stderr, result.stderr
        assert victim.read_bytes() == before
    if name == "checkpoints":
        assert sorted(p.name for p in target.iterdir()) == before_dir


@pytest.mark.parametrize("line", ["preprocess._target_=os.system", "model._target_=torch.nn.Linear",
                                  "augment.flip._target_=nonexistent.Thing"])
def test_a_target_on_the_command_line_is_refused_in_one_line_naming_the_key(tmp_path, line):
    """Options are chosen by name; a callable's path of one's own was a traceback (os.system: 'Located non-class')."""
    result = run_cli("train", "dataset=synthetic", line, "hydra.run.dir=run", cwd=tmp_path, check=False)
    key = line.split("=")[0]
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [result.stderr.strip()] and key in result.stderr
    assert not (tmp_path / "run").exists()
