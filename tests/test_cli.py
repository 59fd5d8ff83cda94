"""End to end through the real `deeprob` CLI on synthetic data: run folder, summary, TensorBoard, sweeps, errors."""
import json

import pytest

from conftest import FAST, read_events, run_cli, run_dirs, summary


@pytest.fixture(scope="module")
def one_run(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("cli")
    run_cli("train", *FAST, "trainer.epochs=2", cwd=cwd, env={"DEEPROB_CACHE": str(cwd / "cache")})
    (run,) = run_dirs(cwd / "runs")
    return run


def test_run_folder_holds_config_checkpoint_summary_and_events(one_run):
    assert (one_run / ".hydra" / "config.yaml").is_file()
    assert (one_run / "checkpoints" / "last.pt").is_file()
    assert list(one_run.glob("events.out.tfevents.*"))
    assert one_run.parent.parent.name == "runs"  # runs/<date>/<time>


def test_summary_reports_a_completed_learning_run(one_run):
    s = summary(one_run)
    for key in ("status", "epochs_completed", "train_loss", "train_acc", "val_loss", "val_acc", "test_acc",
                "seconds", "images_per_second", "device", "params", "choices"):
        assert key in s, key
    assert s["status"] == "completed" and s["epochs_completed"] == 2 and s["device"] == "cpu"
    assert s["val_acc"] > 0.5  # 4 learnable classes: chance is 0.25
    assert s["images_per_second"] > 0 and s["params"] > 1000
    assert s["choices"]["activation"] == "relu" and s["choices"]["augment"] == ["flip", "crop"]
    assert s["choices"]["regularizer"] == ["l2"]


def test_event_file_has_scalars_and_one_histogram_per_activation_layer(one_run):
    scalars, histograms = read_events(one_run)
    for tag in ("train/loss", "train/acc", "val/loss", "val/acc", "lr"):
        assert tag in scalars, tag
    steps = summary(one_run)["steps"]
    assert [s for s, _ in scalars["train/loss"]] == list(range(steps))  # one point per step, none twice
    assert len(scalars["val/acc"]) == 2  # one per epoch
    assert scalars["val/acc"][-1][1] == pytest.approx(summary(one_run)["val_acc"])
    # convnet widths [8,16] × 2 convs per stage = 4 activation layers
    assert {t for t in histograms if t.startswith("activation/")} == {
        "activation/act1_1", "activation/act1_2", "activation/act2_1", "activation/act2_2"}
    assert "weight/conv1_1.weight" in histograms and "grad/conv1_1.weight" in histograms


def test_hparams_are_written_for_the_hparams_tab(one_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(one_run))
    acc.Reload()
    plugin = acc.PluginTagToContent("hparams")
    assert "_hparams_/experiment" in plugin and "_hparams_/session_start_info" in plugin
    from tensorboard.plugins.hparams import plugin_data_pb2

    start = plugin_data_pb2.HParamsPluginData.FromString(plugin["_hparams_/session_start_info"])
    hp = start.session_start_info.hparams
    assert hp["activation"].string_value == "relu" and hp["optim.lr"].number_value == pytest.approx(0.05)


def test_same_seed_same_metrics(tmp_path, one_run):
    run_cli("train", *FAST, "trainer.epochs=2", cwd=tmp_path)
    (again,) = run_dirs(tmp_path / "runs")
    a, b = summary(one_run), summary(again)
    for key in ("train_loss", "train_acc", "val_loss", "val_acc", "test_acc"):
        assert a[key] == b[key], key


def test_multirun_gives_one_folder_and_summary_per_job(tmp_path):
    run_cli("train", "-m", "activation=relu,tanh", *FAST, cwd=tmp_path)
    runs = run_dirs(tmp_path / "runs" / "multirun")
    assert [r.name for r in runs] == ["activation=relu", "activation=tanh"]  # named by what the sweep varies
    assert [summary(r)["choices"]["activation"] for r in runs] == ["relu", "tanh"]
    assert all(summary(r)["status"] == "completed" for r in runs)


def test_list_sweep_over_a_multi_select_group(tmp_path):
    run_cli("train", "-m", "augment=[flip],[flip,crop]", "regularizer=none", *FAST, cwd=tmp_path)
    runs = run_dirs(tmp_path / "runs" / "multirun")
    assert [summary(r)["choices"]["augment"] for r in runs] == [["flip"], ["flip", "crop"]]
    assert [summary(r)["choices"]["regularizer"] for r in runs] == [[], []]


def test_cfg_job_prints_the_composed_config_without_training(tmp_path):
    out = run_cli("train", "activation=gelu", "augment=flip", "--cfg", "job", cwd=tmp_path).stdout
    assert "activation.GELU" in out and "augment:\n  flip:" in out and "crop" not in out.split("regularizer:")[0]
    assert not (tmp_path / "runs").exists()


def test_help_lists_every_group_and_its_options(tmp_path):
    from conftest import REPO

    from deeprob_cli.launch import first_sentence

    out = run_cli("train", "--help", cwd=tmp_path).stdout
    lines = out.splitlines()
    for group in sorted(p for p in (REPO / "conf").iterdir() if p.is_dir()):
        header = next(i for i, line in enumerate(lines) if line.startswith(f"{group.name}  [default: ")
                      or line.startswith(f"{group.name} (multi-select)  [default: "))
        listed = [line.split()[0] for line in lines[header + 1:] if line.startswith("  ") and line.strip()]
        options = sorted(lines[header + 1:header + 1 + len(list(group.glob("*.yaml")))])
        assert [o.split()[0] for o in options] == sorted(f.stem for f in group.glob("*.yaml")), group.name
        for option in group.glob("*.yaml"):  # each with the first sentence of its YAML header
            assert f"  {option.stem:<18}{first_sentence(option)}" in lines, option
        assert listed
    assert "hydra:" not in out and "init_stats:" not in out  # internal blocks stay hidden
    assert "  trainer:" in out and "epochs: 10" in out


def test_top_level_help_lists_subcommands(tmp_path):
    """Every command the dispatcher runs has its line under "commands:" in `deeprob --help`, and no other."""
    from deeprob_cli.launch import HYDRA_COMMANDS, PLAIN_COMMANDS

    out = run_cli("--help", cwd=tmp_path).stdout
    assert out == run_cli("help", cwd=tmp_path).stdout == run_cli(cwd=tmp_path).stdout
    section = out.split("commands:\n", 1)[1].split("\n\n", 1)[0]
    listed = [line.split()[0] for line in section.splitlines() if line.startswith("  ") and line[2] != " "]
    assert sorted(listed) == sorted([*HYDRA_COMMANDS, *PLAIN_COMMANDS])
    assert len(HYDRA_COMMANDS) + len(PLAIN_COMMANDS) >= 6  # train, init-stats, eval, compare, plot, lab
    bad = run_cli("frobnicate", cwd=tmp_path, check=False)
    assert bad.returncode == 2 and "unknown command 'frobnicate'" in bad.stderr


def test_explicit_run_dir_is_used(tmp_path):
    run_cli("train", *FAST, "hydra.run.dir=mine", cwd=tmp_path)
    assert json.loads((tmp_path / "mine" / "summary.json").read_text())["status"] == "completed"


def test_help_descriptions_do_not_end_at_et_al(tmp_path):
    """`deeprob train --help` showed "CIFAR ResNet (He et al." and "Swish: x·σ(βx) (Ramachandran et al."."""
    from conftest import REPO

    from deeprob_cli.launch import first_sentence

    assert first_sentence(REPO / "conf" / "activation" / "swish.yaml") == \
        "Swish: x·σ(βx) (Ramachandran et al. 2017); β = 1 is SiLU."
    assert first_sentence(REPO / "conf" / "model" / "resnet.yaml").startswith("CIFAR ResNet (He et al. 2016, ")
    option = tmp_path / "x.yaml"
    option.write_text("# Cutout (DeVries & Taylor 2017), e.g. for CIFAR; cf. mixup. Second sentence.\n")
    assert first_sentence(option) == "Cutout (DeVries & Taylor 2017), e.g. for CIFAR; cf. mixup."
    for group in (REPO / "conf").iterdir():  # no option's description ends inside a parenthesis
        for path in group.glob("*.yaml"):
            text = first_sentence(path)
            assert text.count("(") == text.count(")") or text.endswith("…"), path
