"""`deeprob compare`: seed groups with 95 % intervals and noise notes, skipped and unreadable folders, number
formatting, and the figure read back (legend outside the axes, epochs on x). One real sweep end to end; the rest
on constructed run folders (config.yaml + summary.json + TensorBoard scalars written here)."""
import csv
import io
import json
import math

import pytest
import torch
from omegaconf import OmegaConf

from conftest import run_cli, run_dirs, summary
from deeprob_cli import compare, stats

T975_2 = 4.302653  # t_{0.975, 2}: 3 seeds

BASE = {"task": "train", "trainer": {"seed": 0, "epochs": 2, "batch_size": 64},
        "optim": {"_target_": "torch.optim.SGD", "lr": 0.1}, "activation": {"_target_": "torch.nn.ReLU"}}


def make_run(folder, seed=0, val_acc=0.8, status="completed", activation="relu", lr=0.1, curve=None,
             layout="split", **extra):
    """A run folder as deeprob train leaves it; curve = [val_acc per epoch] also writes TensorBoard events (10 steps
    per epoch, write_events)."""
    config = json.loads(json.dumps(BASE))
    config["trainer"]["seed"], config["optim"]["lr"] = seed, lr
    (folder / ".hydra").mkdir(parents=True)
    OmegaConf.save(OmegaConf.create(config), folder / ".hydra" / "config.yaml")
    record = {"status": status, "val_acc": val_acc, "train_acc": 0.9, "train_loss": 0.5, "seconds": 1.0,
              "choices": {"activation": activation, "optim": "sgd", "experiment": None}, **extra}
    (folder / "summary.json").write_text(json.dumps(record))
    if curve:
        write_events(folder, curve, layout)
    return folder


def write_events(folder, curve, layout="split", steps=10, losses=None):
    """TensorBoard events as deeprob train writes them, `steps` steps per epoch: the losses (default 2/(1+s) at
    step s, one epoch per value of curve), and each epoch's train and val accuracy (curve) at its last step.
    layout="split": today's Monitor, one writer per split, steps per epoch recorded; "flat": every tag in the run
    folder itself, as runs made before the split layout hold them."""
    from torch import nn
    from torch.utils.tensorboard import SummaryWriter

    from deeprob_cli.monitor import Monitor

    losses = losses or [2.0 / (1 + s) for s in range(steps * len(curve))]
    if layout == "split":
        monitor = Monitor(folder, nn.Sequential(nn.Linear(2, 2), nn.ReLU()), nn.ReLU, hist_every=0)
        monitor.hparams({"activation": "relu"}, steps_per_epoch=steps)
        monitor.step_losses(0, [torch.tensor(v) for v in losses])
        for epoch, acc in enumerate(curve, 1):
            monitor.scalars({"train/acc": acc, "val/acc": acc, "lr": 0.1}, steps * epoch - 1)
        monitor.close()
        return
    with SummaryWriter(str(folder)) as w:
        for step, loss in enumerate(losses):
            w.add_scalar("train/loss", loss, step)
        for epoch, acc in enumerate(curve, 1):
            w.add_scalar("train/acc", acc, steps * epoch - 1)
            w.add_scalar("val/acc", acc, steps * epoch - 1)


def compare_main(capsys, *args):
    compare.main([str(a) for a in args])
    captured = capsys.readouterr()
    return captured.out, captured.err


A, B, C = [0.80, 0.82, 0.81], [0.70, 0.73, 0.71], [0.805, 0.815, 0.80]


@pytest.fixture
def seeded(tmp_path):
    """relu (A), tanh (B, clearly worse) and elu (C, within noise of A), each over seeds 0, 1, 2."""
    for name, accs in (("relu", A), ("tanh", B), ("elu", C)):
        for seed, acc in enumerate(accs):
            make_run(tmp_path / "sweep" / f"{name}{seed}", seed=seed, val_acc=acc, activation=name)
    return tmp_path / "sweep"


def test_seed_groups_show_mean_and_t_interval(seeded, capsys, tmp_path):
    out, _ = compare_main(capsys, seeded, "--out", tmp_path / "c.png")
    lines = out.splitlines()
    assert lines[0].startswith("| activation | n | seeds | status | val_acc (mean ± 95 %) |")
    assert "trainer.seed" not in lines[0]  # the seed is the repetition, not a column
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:5]]
    assert [r[0] for r in rows] == ["relu", "elu", "tanh"]  # best mean first
    half = T975_2 * 0.01 / math.sqrt(3)  # sd of A is 0.01
    assert rows[0][1:4] == ["3", "0,1,2", "3 completed"] and rows[0][4] == f"0.8100 ± {half:.4f}"
    rows = list(csv.reader(io.StringIO(compare_main(capsys, seeded, "--csv", "--out", tmp_path / "c.png")[0])))
    assert rows[0][:7] == ["activation", "n", "seeds", "status", "val_acc mean", "val_acc ci95 low",
                           "val_acc ci95 high"]
    assert [float(v) for v in rows[1][4:7]] == pytest.approx([0.81, 0.81 - half, 0.81 + half], abs=1e-4)


def test_differences_against_the_best_are_paired_by_seed_and_judged(seeded, capsys, tmp_path):
    out, _ = compare_main(capsys, seeded, "--out", tmp_path / "c.png")
    notes = out.split("\n\n", 1)[1].splitlines()
    assert notes[0].startswith("best val_acc: activation=relu (0.8100 ± ")
    elu, tanh = notes[1], notes[2]
    d = stats.paired(A, C)  # A − C = −0.005, +0.005, +0.01: within noise
    assert elu.startswith(f"- vs activation=elu: +{d.mean:.4f} [{d.ci95[0]:.4f}, {d.ci95[1]:.4f}], "
                          f"paired over seeds 0,1,2: within noise (this design detects differences ≥ "
                          f"{d.detectable:.4f})")
    assert tanh.endswith("paired over seeds 0,1,2: a real difference (the interval excludes 0)")
    # with the shared seed effect removed, pairing decides where an unpaired comparison would not
    assert stats.paired(A, B).ci95[0] > 0


def test_different_seeds_fall_back_to_welch_and_single_runs_get_no_interval(tmp_path, capsys):
    for seed, acc in enumerate(A):
        make_run(tmp_path / f"a{seed}", seed=seed, val_acc=acc)
    for seed, acc in zip((5, 6, 7), B):
        make_run(tmp_path / f"b{seed}", seed=seed, val_acc=acc, activation="tanh")
    make_run(tmp_path / "c", seed=0, val_acc=0.5, activation="elu")
    out, _ = compare_main(capsys, tmp_path, "--out", tmp_path / "c.png")
    assert "| elu | 1 | 0 | 1 completed | 0.5000 (1 seed) |" in out
    welch = stats.unpaired(A, B)
    assert (f"- vs activation=tanh: +{welch.mean:.4f} [{welch.ci95[0]:.4f}, {welch.ci95[1]:.4f}], unpaired "
            f"(Welch; the seeds differ): a real difference") in out
    assert "- vs activation=elu: no interval (needs ≥ 2 completed seeds in each; sweep trainer.seed=0,1,2)" in out


def test_a_diverged_seed_is_listed_never_averaged_and_printed_readably(tmp_path, capsys):
    for seed, acc in enumerate(A):
        make_run(tmp_path / f"a{seed}", seed=seed, val_acc=acc)
    make_run(tmp_path / "a3", seed=3, val_acc=None, status="diverged", train_loss=101421459432569569280.0)
    out, _ = compare_main(capsys, tmp_path, "--out", tmp_path / "c.png")
    assert "| all runs" not in out and "| 3 | 0,1,2 | 3 completed, 1 diverged | 0.8100 ± " in out
    out, _ = compare_main(capsys, tmp_path, "--runs", "--out", tmp_path / "c.png")
    diverged = [line for line in out.splitlines() if "| diverged |" in line]
    assert len(diverged) == 1 and "1.014e+20" in diverged[0] and "101421459432569569280" not in out


@pytest.mark.parametrize("value, shown", [
    (101421459432569569280.0, "1.014e+20"), (0.76171875, "0.7617"), (float("nan"), "nan"), (float("inf"), "inf"),
    (1e-5, "1.000e-05"), (0.0, "0.0000"), (3, "3"), (None, ""), (True, "True"), (12345.678, "12345.6780"),
])
def test_number_formatting(value, shown):
    assert compare.fmt(value) == shown


def test_init_stats_and_unfinished_folders_are_skipped_not_counted(tmp_path, capsys):
    make_run(tmp_path / "r1", lr=0.1, val_acc=0.7)
    make_run(tmp_path / "r2", lr=0.01, val_acc=0.6)
    init_stats = tmp_path / "init"
    (init_stats / ".hydra").mkdir(parents=True)
    OmegaConf.save(OmegaConf.create({"task": "init_stats", "init_stats": {"dims": [8, 8]}}),
                   init_stats / ".hydra" / "config.yaml")
    (init_stats / "stats.json").write_text("[]")
    out, err = compare_main(capsys, tmp_path, "--out", tmp_path / "c.png")
    assert out.splitlines()[0].startswith("| run | optim.lr | status |")  # not hidden by the init-stats folder
    assert len(out.splitlines()) == 2 + 2 and str(init_stats) not in out
    assert f"skipped 1 folder(s) without summary.json (init-stats results or runs still in progress): {init_stats}" \
        in err
    assert "no error bars" in err and "trainer.seed=0,1,2" in err


def test_a_group_parameter_is_shown_when_runs_with_the_same_option_differ_in_it(tmp_path):
    rows = [{"settings": {"optim": o, "optim.lr": lr, "activation": a, "activation.alpha": al},
             "groups": {"optim", "activation"}}
            for o, lr, a, al in (("sgd", 0.1, "elu", 1.0), ("sgd", 0.01, "relu", None), ("adam", 0.001, "elu", 1.0))]
    assert compare.differing(rows) == ["activation", "optim", "optim.lr"]  # alpha only follows the option


@pytest.mark.parametrize("name, content, cause", [
    ("summary.json", '{"status": "completed", "val_acc": 0.8', "not valid JSON (Expecting ',' delimiter at line 1)"),
    ("summary.json", '{"status": "completed", "val_acc": "0.8"}', "val_acc is '0.8' (str); expected a number or null"),
    ("summary.json", '{"status": 1}', "status is 1; expected a string"),
    ("summary.json", '[1, 2]', "expected a JSON object, found list"),
    ("summary.json", '{"status": "completed", "choices": {"optim": 3}}', "choices.optim is 3"),
    (".hydra/config.yaml", "trainer: [seed: 0\n  x: }", "not a readable config"),
    (".hydra/config.yaml", "- 1\n- 2\n", "expected a mapping of settings, found list"),
])
def test_an_unreadable_run_is_one_warning_naming_the_file(tmp_path, capsys, name, content, cause):
    make_run(tmp_path / "good", val_acc=0.7)
    bad = make_run(tmp_path / "bad", val_acc=0.6, lr=0.5)
    (bad / name).write_text(content)
    out, err = compare_main(capsys, tmp_path, "--out", tmp_path / "c.png")
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and warnings[0].startswith(f"deeprob compare: warning: skipped {bad / name}: ")
    assert cause in warnings[0]
    assert str(tmp_path / "good") in out and str(bad) not in out


def test_nothing_readable_is_one_line_exit_2(tmp_path, capsys):
    (make_run(tmp_path / "bad") / "summary.json").write_text("{")
    empty = tmp_path / "empty"
    empty.mkdir()
    for path, message in ((tmp_path, "compare: none of the runs could be read (see the warnings above)"),
                          (tmp_path / "missing", f"compare: {tmp_path / 'missing'} does not exist"),
                          (empty, f"compare: no run folders (with .hydra/config.yaml and summary.json) under {empty}")):
        with pytest.raises(SystemExit) as exit_:
            compare.main([str(path)])
        assert exit_.value.code == 2
        assert capsys.readouterr().err.splitlines()[-1].startswith(f"deeprob compare: error: {message}")


def test_figure_at_24_configurations_keeps_the_legend_outside_and_plots_epochs(tmp_path):
    entries = []
    for i in range(24):
        run = make_run(tmp_path / f"r{i}", activation=f"act{i}", curve=[0.3 + 0.01 * i, 0.5 + 0.01 * i])
        entries.append({"label": f"activation=act{i} optim.lr=0.1", "curves": [compare.curves(run)],
                        "completed": True})
    diverged = make_run(tmp_path / "diverged", status="diverged", curve=[0.1])
    curves = compare.curves(diverged)
    curves["train/loss"] = (curves["train/loss"][0], [1e20] * len(curves["train/loss"][1]))
    entries.append({"label": "diverged [diverged]", "curves": [curves], "completed": False})

    fig = compare.draw(entries)
    fig.draw_without_rendering()  # runs the constrained layout, as savefig does
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == [e["label"] for e in entries]
    assert min(t.get_fontsize() for t in legend.get_texts()) >= 8
    box = legend.get_window_extent()
    for ax in fig.axes:
        assert not box.overlaps(ax.get_window_extent())  # outside both axes
        assert ax.get_xlabel() == "epoch" and ax.get_ylabel()
    assert box.y0 >= 0 and box.y1 <= fig.bbox.height and box.x1 <= fig.bbox.width  # and on the page
    loss_top = fig.axes[1].get_ylim()[1]
    assert loss_top < 10  # the diverged 1e20 does not squash the others' curves
    colours = [compare.style(i)["color"] for i in range(24)]
    styles = [(c, compare.style(i)["linestyle"]) for i, c in enumerate(colours)]
    assert len(set(styles)) == 24 and len(set(colours[:10])) == 10


def test_loss_panel_is_readable_and_the_figure_carries_title_and_verdicts(seeded, tmp_path, capsys):
    """Final losses of 1.25-1.8 (within one decade): a linear axis with labelled ticks between them, not a log
    axis labelled at 2, 3, 4 only; the figure's title names what is compared and carries the table's verdicts."""
    entries = []
    for i, final in enumerate((1.25, 1.5, 1.8)):
        run = make_run(tmp_path / f"l{i}", activation=f"act{i}", curve=[0.4, 0.5])
        curves = compare.curves(run)
        xs = curves["train/loss"][0]
        curves["train/loss"] = (xs, [2.3 - (2.3 - final) * k / (len(xs) - 1) for k in range(len(xs))])
        entries.append({"label": f"act{i}", "curves": [curves], "completed": True})
    fig = compare.draw(entries, "title", ["best val_acc: x", "- vs y: within noise"])
    fig.draw_without_rendering()
    loss = fig.axes[1]
    assert loss.get_yscale() == "linear"
    labelled = [t.get_position()[1] for t in loss.get_yticklabels() if t.get_text()]
    assert len([v for v in labelled if 1.25 <= v <= 1.8]) >= 3  # the final values can be read off the axis
    assert fig.get_suptitle() == "title\nbest val_acc: x\n- vs y: within noise"
    drawn = compare.draw  # the command's own figure: its title and the verdicts it printed
    seen = {}
    compare.draw = lambda *a: seen.setdefault("fig", drawn(*a))
    try:
        compare_main(capsys, seeded, "--out", tmp_path / "c.png")
    finally:
        compare.draw = drawn
    title = seen["fig"].get_suptitle()
    assert title.startswith("deeprob compare: ") and "by val_acc" in title and "a real difference" in title


def test_a_real_seed_sweep_end_to_end(tmp_path, capsys):
    """The documented way to error bars: sweep trainer.seed, then compare."""
    run_cli("train", "-m", "activation=relu,tanh", "trainer.seed=0,1", "dataset=synthetic", "dataset.num_train=320",
            "dataset.val_size=64", "model=mlp", "model.width=32", "trainer.epochs=2", "trainer.batch_size=64",
            cwd=tmp_path)
    runs = run_dirs(tmp_path / "runs" / "multirun")
    sweep = runs[0].parent
    (sweep / "init").mkdir()  # an init-stats folder next to them is skipped
    result = run_cli("compare", sweep, cwd=tmp_path)
    lines = result.stdout.splitlines()
    assert lines[0].startswith("| activation | n | seeds | status | val_acc (mean ± 95 %) |")
    for activation in ("relu", "tanh"):
        accs = [summary(r)["val_acc"] for r in runs if summary(r)["choices"]["activation"] == activation]
        e = stats.one_sample(accs)
        assert f"| {activation} | 2 | 0,1 | 2 completed | {e.mean:.4f} ± {compare.fmt(e.half_width)} |" in \
            result.stdout
    assert any(line.startswith("- vs activation=") and "paired over seeds 0,1" in line for line in lines)
    assert (sweep / "compare.png").stat().st_size > 10_000
    per_run, _ = compare_main(capsys, sweep, "--runs", "--csv")
    rows = list(csv.reader(io.StringIO(per_run)))
    assert rows[0][:4] == ["run", "activation", "trainer.seed", "status"] and len(rows) == 1 + 4
    accs = [float(r[5]) for r in rows[1:]]  # the val_acc column, best first
    assert accs == sorted(accs, reverse=True)


def test_a_loss_ranks_lowest_first_and_a_negative_difference_is_real(tmp_path, capsys):
    for name, losses in (("tanh", [0.60, 0.63, 0.61]), ("relu", [0.50, 0.52, 0.51])):
        for seed, loss in enumerate(losses):
            make_run(tmp_path / f"{name}{seed}", seed=seed, activation=name, train_loss=loss)
    out, _ = compare_main(capsys, tmp_path, "--metric", "train_loss", "--out", tmp_path / "c.png")
    lines = out.splitlines()
    assert "train_loss (mean ± 95 %)" in lines[0].split(" | ")[4] and lines[2].startswith("| relu |")
    d = stats.paired([0.50, 0.52, 0.51], [0.60, 0.63, 0.61])
    assert f"- vs activation=tanh: {d.mean:.4f} [{d.ci95[0]:.4f}, {d.ci95[1]:.4f}], paired over seeds 0,1,2: " \
           f"a real difference" in out


# ---------------------------------------------------------------- epochs on x, exactly (issue 28)

@pytest.mark.parametrize("layout", ["split", "flat"])
def test_epochs_are_steps_done_over_steps_per_epoch_exactly(tmp_path, layout):
    """23 steps per epoch (3,000 images, batch 128): epoch k's validation point lies on k, step s at (s+1)/23; runs
    made before the split layout (flat) read the same."""
    run = tmp_path / "r23"
    run.mkdir()
    write_events(run, [0.3, 0.4, 0.45, 0.5], layout, steps=23)
    curves = compare.curves(run)
    assert curves["val/acc"] == ([1.0, 2.0, 3.0, 4.0], pytest.approx([0.3, 0.4, 0.45, 0.5]))
    assert curves["train/loss"][0] == [(s + 1) / 23 for s in range(92)] and curves["train/loss"][0][-1] == 4.0
    fig = compare.draw([{"label": "r", "curves": [curves], "completed": True}])
    val_line = fig.axes[0].lines[0]
    assert list(val_line.get_xdata()) == [1.0, 2.0, 3.0, 4.0]  # the figure draws them there


def test_a_run_that_diverged_in_its_first_epoch_has_its_losses_placed(tmp_path):
    """No epoch ended, so no accuracy tells the epoch's length: the recorded steps per epoch does."""
    run = tmp_path / "diverged"
    run.mkdir()
    write_events(run, [], steps=23, losses=[2.3, 40.0, 9e3, 1.1e6, 5.0])
    assert compare.curves(run) == {"train/loss": ([(s + 1) / 23 for s in range(5)],
                                                  pytest.approx([2.3, 40.0, 9e3, 1.1e6, 5.0]))}


# ---------------------------------------------------------------- one configuration, each seed once (issue 25)

def test_a_resumed_run_stays_in_its_configuration(tmp_path, capsys):
    for seed, acc in enumerate(A):
        run = make_run(tmp_path / f"a{seed}", seed=seed, val_acc=acc)
        if seed == 1:  # what a sweep re-run with resume=auto leaves in the job it continued
            config = OmegaConf.load(run / ".hydra" / "config.yaml")
            config.resume = "auto"
            OmegaConf.save(config, run / ".hydra" / "config.yaml")
    out, _ = compare_main(capsys, tmp_path, "--out", tmp_path / "c.png")
    assert out.splitlines()[0].startswith("| n | seeds | status | val_acc (mean ± 95 %) |")  # no resume column
    assert out.splitlines()[2].startswith("| 3 | 0,1,2 | 3 completed | 0.8100 ± ")


def test_a_repeated_seed_counts_once_in_the_table_and_the_figure(tmp_path, capsys):
    for seed, acc in enumerate(A):
        make_run(tmp_path / f"a{seed}", seed=seed, val_acc=acc, curve=[acc])
    again = make_run(tmp_path / "a0-again", seed=0, val_acc=0.86, curve=[0.86])  # the newest run of seed 0
    drawn = []
    real_plot = compare.plot
    compare.plot = lambda entries, out, *a: drawn.extend(entries) or real_plot(entries, out, *a)
    try:
        out, err = compare_main(capsys, tmp_path, "--out", tmp_path / "c.png")
    finally:
        compare.plot = real_plot
    (entry,) = drawn  # the figure's band: the same 3 seeds as the table's n, seed 0 from its newest run
    assert "(n=3)" in entry["label"] and len(entry["curves"]) == 3
    assert sorted(round(c["val/acc"][1][0], 6) for c in entry["curves"]) == [0.81, 0.82, 0.86]
    mean = (0.86 + 0.82 + 0.81) / 3
    assert f"| 3 | 0,1,2 | 3 completed | {mean:.4f} ± " in out  # not 4 completed, not seed 0's older value
    assert (f"deeprob compare: warning: all runs: seed 0 was run 2 times; counted once, from {again} (completed); "
            f"left out: {tmp_path / 'a0'}") in err
    rows = compare.read_rows([tmp_path])
    (group,) = compare.group_runs(rows, compare.differing(rows))
    assert sorted(r["run"].name for r in group["runs"]) == ["a0-again", "a1", "a2"]  # what the band is drawn from
    capsys.readouterr()


# ---------------------------------------------------------------- plain use: pipes, Ctrl-C, an ASCII terminal

def _compare_process(tmp_path, *args, env=None, **kwargs):
    import os
    import subprocess
    import sys

    from conftest import REPO

    base = {k: v for k, v in os.environ.items() if k not in ("LANG", "LC_ALL", "LC_CTYPE", "PYTHONIOENCODING")}
    return subprocess.Popen([sys.executable, "-m", "deeprob_cli", "compare", *map(str, args)], cwd=tmp_path,
                            env={**base, "PYTHONPATH": str(REPO), **(env or {})}, stderr=subprocess.PIPE, text=True,
                            **kwargs)


def test_a_plain_ascii_terminal_gets_ascii_stand_ins(seeded, tmp_path):
    import subprocess

    proc = _compare_process(tmp_path, seeded, "--out", tmp_path / "c.png", env={"LC_ALL": "C", "PYTHONUTF8": "0"},
                            stdout=subprocess.PIPE)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and "Traceback" not in err
    assert "| relu | 3 | 0,1,2 | 3 completed | 0.8100 +/- " in out and "detects differences >= " in out


def test_a_closed_pipe_ends_the_output_quietly_and_still_writes_the_figure(seeded, tmp_path):
    """`deeprob compare … | head`: the reader is gone before compare writes (its end of the pipe is closed)."""
    import os

    read, write = os.pipe()
    os.close(read)
    proc = _compare_process(tmp_path, seeded, "--out", tmp_path / "c.png", stdout=write)
    os.close(write)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and err.splitlines() == [f"curves: {tmp_path / 'c.png'}"]
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ctrl_c_is_one_line_exit_130(tmp_path):
    import signal
    import subprocess

    for seed in range(6):
        make_run(tmp_path / "sweep" / f"r{seed}", seed=seed, curve=[0.5, 0.6])
    (tmp_path / "sweep" / "init" / ".hydra").mkdir(parents=True)
    (tmp_path / "sweep" / "init" / ".hydra" / "config.yaml").write_text("task: init_stats\n")
    proc = _compare_process(tmp_path, tmp_path / "sweep", "--out", tmp_path / "c.png", stdout=subprocess.DEVNULL)
    first = proc.stderr.readline()  # the note on the skipped folder: the runs are read, the curves come next
    assert first.startswith("deeprob compare: skipped 1 folder(s)")
    proc.send_signal(signal.SIGINT)
    rest = proc.stderr.read()
    assert proc.wait(timeout=60) == 130 and rest == "deeprob compare: interrupted\n"
    assert not (tmp_path / "c.png").exists()
