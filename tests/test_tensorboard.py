"""What a user sees in TensorBoard, asked of the real TensorBoard server over its HTTP API: one run per split
(RUN/train, RUN/val, RUN/test) with the same tags, loss and accuracy first (Custom Scalars layout), the real final
status and only the metrics a run can have in HParams, a diverged run's finite losses, the config and command in
the Text tab, the captioned augmentation grid, init-stats as one histogram tag stepped by layer.

    pytest -q -p no:xdist tests/test_tensorboard.py
"""
import io
import json
import math
import re
import subprocess
import sys
import urllib.parse
import urllib.request
from contextlib import contextmanager

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from conftest import make_cfg, run_cli, run_dirs, summary
from deeprob_cli.init_stats import log_histograms, measure
from deeprob_cli.monitor import Monitor, final_metrics

# two jobs of one sweep: 256 training images, batch 64 → 4 steps per epoch; lr 1e6 diverges in epoch 2
SWEEP = ["dataset=synthetic", "dataset.num_train=512", "trainer.epochs=2", "trainer.batch_size=64",
         "model.widths=[8,16]", "log.hist_every=3", "optim.lr=0.05,1e6"]
INIT_STATS = ["init=xavier", "activation=tanh", "init_stats.dims=[64,64,64,64,64]",
              "init_stats.batch=32"]


@contextmanager
def tensorboard(logdir, fast=False):
    """A real `tensorboard` on a free port: with fast=False one that has read every event file before it answers
    (blocking load); with fast=True the default loader a user gets (the Rust data server, loading in the background)."""
    load = ["--reload_interval=0"] if fast else ["--load_fast=false", "--reload_interval=0", "--reload_task=blocking"]
    proc = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--port", "0", *load],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        for line in proc.stderr:  # "TensorBoard 2.x at http://localhost:PORT/ (Press CTRL+C to quit)"
            lines.append(line)
            found = re.search(r"at (http://\S+?)/? \(Press", line)
            if found:
                break
        else:
            raise AssertionError("tensorboard did not start:\n" + "".join(lines))
        yield found.group(1)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


class Board:
    """GET and POST the server's JSON routes."""

    def __init__(self, url):
        self.url = url

    def get(self, route, raw=False, **query):
        with urllib.request.urlopen(f"{self.url}/data/{route}?{urllib.parse.urlencode(query)}", timeout=30) as r:
            body = r.read()
        return body if raw else json.loads(body)

    def post(self, route, payload: dict):
        request = urllib.request.Request(f"{self.url}/data/{route}", data=json.dumps(payload).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as r:
            return json.loads(r.read())

    def scalars(self, run, tag):
        return [(step, value) for _, step, value in self.get("plugin/scalars/scalars", run=run, tag=tag)]


def interrupted_then_resumed(logdir, resume: bool):
    """A run stopped by a signal at step 2 (no end record), optionally resumed to completion at step 4."""
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
    monitor = Monitor(logdir, model, nn.ReLU, hist_every=0)
    monitor.hparams({"activation": "relu", "optim.lr": 0.1}, final_metrics(val=True, test=True, tta=False))
    monitor.step_losses(0, [torch.tensor(1.0), torch.tensor(0.9)])
    monitor.finish("interrupted", {"signal": "SIGTERM"}, 2)
    if resume:
        monitor = Monitor(logdir, model, nn.ReLU, hist_every=0, purge_step=2)
        monitor.step_losses(2, [torch.tensor(0.8), torch.tensor(0.7)])
        monitor.finish("completed", {"val_acc": 0.5, "test_acc": 0.25, "train_loss": 0.75}, 4)


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    """A sweep (one completed, one diverged job), an interrupted and a resumed run and an init-stats run in one
    logdir, served by TensorBoard; yields (Board, {name: run folder}, init-stats layer outputs)."""
    root = tmp_path_factory.mktemp("tb")
    logdir = root / "runs"
    run_cli("train", "-m", *SWEEP, f"hydra.sweep.dir={logdir / 'sweep'}", cwd=root,
            env={"DEEPROB_CACHE": str(root / "cache")})
    runs = {summary(d)["status"]: d for d in run_dirs(logdir / "sweep")}
    interrupted_then_resumed(logdir / "interrupted", resume=False)
    interrupted_then_resumed(logdir / "resumed", resume=True)
    _, outputs = measure(make_cfg(*INIT_STATS, config_name="init_stats"))
    log_histograms(outputs, logdir / "init_stats")
    names = {**{status: d.relative_to(logdir).as_posix() for status, d in runs.items()},
             "interrupted": "interrupted", "resumed": "resumed", "init_stats": "init_stats"}
    with tensorboard(logdir) as url:
        yield Board(url), names, runs, outputs


def test_every_tab_has_data(board):
    tb, *_ = board
    enabled = {name for name, plugin in tb.get("plugins_listing").items() if plugin["enabled"]}
    assert {"scalars", "custom_scalars", "images", "histograms", "text", "hparams"} <= enabled


def test_custom_scalars_open_on_loss_and_accuracy_then_per_layer_diagnostics(board):
    tb, names, runs, _ = board
    layout = tb.get("plugin/custom_scalars/layout")["category"]
    assert [c["title"].split(",")[0] for c in layout] == [
        "loss and accuracy", "dead and saturated units", "activations", "gradients w.r.t. the activations",
        "pre-activations"]
    first = {chart["title"].split(" ")[0]: chart["multiline"]["tag"] for chart in layout[0]["chart"]}
    assert not layout[0].get("closed")
    run = names["completed"]
    steps = summary(runs["completed"])["steps"]
    # train and val loss on one chart, a line per split (its own run, so its own colour and legend name): every
    # step's train loss and one val loss per epoch; accuracy likewise, with the test accuracy at the last epoch
    def chart(title, split):
        (regex,) = first[title]
        found = tb.get("plugin/custom_scalars/scalars", run=f"{run}/{split}", tag=regex)["tag_to_events"]
        return {tag: [e[1] for e in events] for tag, events in found.items()}

    assert chart("loss", "train") == {"loss": list(range(steps))} and chart("loss", "val") == {"loss": [3, 7]}
    assert chart("accuracy", "train") == chart("accuracy", "val") == {"acc": [3, 7]}
    assert chart("accuracy", "test") == {"acc": [7]}
    assert {f"{run}/{split}" for split in ("train", "val", "test")} <= set(tb.get("runs"))
    # every per-layer diagnostic of the run is on a chart of a later category, none on the first
    tags = set(tb.get("plugin/scalars/tags")[run])
    diagnostics = {t for t in tags if t.split("/")[0] in ("dead", "saturated", "act", "act_grad", "preact")}
    assert len(diagnostics) == 4 * 7  # 4 ReLU layers × dead, {preact, act, act_grad} × {mean, std}
    later = [r for c in layout[1:] for chart in c["chart"] for r in chart["multiline"]["tag"]]
    assert all(any(re.search(r, t) for r in later) for t in diagnostics)
    assert not any(re.search(r, t) for t in diagnostics for regexes in first.values() for r in regexes)


def test_hparams_show_the_real_final_status_and_the_final_numbers(board):
    tb, names, runs, _ = board
    experiment = tb.post("plugin/hparams/experiment", {"experimentName": ""})
    # only the metrics these runs can have: tta=none repeats no val_acc as val_acc_tta
    declared = {m["name"]["tag"] for m in experiment["metricInfos"]}
    assert declared == {"final/val_acc", "final/test_acc", "final/train_loss", "final/train_acc", "final/val_loss"}
    groups = tb.post("plugin/hparams/session_groups", {
        "experimentName": "", "startIndex": 0, "sliceSize": 100, "colParams": [],
        "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]})
    sessions = {s["name"]: s for g in groups["sessionGroups"] for s in g["sessions"]}
    status = {name: sessions[run].get("status") for name, run in names.items() if run in sessions}
    assert status == {"completed": "STATUS_SUCCESS", "diverged": "STATUS_FAILURE",
                      "interrupted": "STATUS_UNKNOWN", "resumed": "STATUS_SUCCESS"}
    done = summary(runs["completed"])
    metrics = {m["name"]["tag"]: m["value"] for m in sessions[names["completed"]]["metricValues"]}
    for key in ("val_acc", "test_acc", "train_loss"):
        assert metrics[f"final/{key}"] == pytest.approx(done[key], rel=1e-6)
    assert tb.scalars(f"{names['completed']}/val", "acc")[-1][1] == pytest.approx(done["val_acc"], rel=1e-6)
    diverged = {m["name"]["tag"] for m in sessions[names["diverged"]]["metricValues"]}
    assert "final/test_acc" not in diverged  # a diverged run is never scored on test
    # parallel coordinates draw the runs: every declared metric has a value in some run
    assert declared == {m["name"]["tag"] for s in sessions.values() for m in s["metricValues"]}


def test_a_diverged_run_shows_every_finite_loss_up_to_its_divergence(board):
    """lr 1e6 diverges (a loss, or at the epoch's checkpoint a batch-norm statistic, turns non-finite): every loss
    computed before it stopped is there (tests/test_monitor.py stops one inside an epoch)."""
    tb, names, runs, _ = board
    diverged = summary(runs["diverged"])
    assert diverged["status"] == "diverged" and diverged["steps"] >= 1
    losses = tb.scalars(f"{names['diverged']}/train", "loss")
    assert [step for step, _ in losses] == list(range(diverged["steps"]))
    assert all(math.isfinite(v) for _, v in losses) and losses[-1][1] == pytest.approx(diverged["last_finite_loss"])


def test_text_tab_holds_the_config_the_command_and_the_status(board):
    tb, names, runs, _ = board
    run = names["diverged"]
    tags = tb.get("plugin/text/tags")[run]
    assert {"config/text_summary", "command/text_summary", "status/text_summary"} <= set(tags)

    def text(tag):
        (entry,) = tb.get("plugin/text/text", run=run, tag=f"{tag}/text_summary")
        return entry["text"]

    config = OmegaConf.load(runs["diverged"] / ".hydra" / "config.yaml")
    shown = text("config")
    for line in ("lr: 1000000.0", "num_train: 512", "hist_every: 3", "_target_: deeprob_cli.models.ConvNet"):
        assert line in shown
    assert config.optim.lr == 1e6 and f"epochs: {config.trainer.epochs}" in shown
    assert "deeprob train" in text("command") and "optim.lr=1000000.0" in text("command")
    assert "<strong>diverged</strong>" in text("status") and "became" in text("status")  # the loss or a weight


def test_augmentation_grid_is_captioned(board):
    tb, names, *_ = board
    run = names["completed"]
    card = tb.get("plugin/images/tags")[run]["augment/examples"]
    assert "Top row: 8 training images" in card["description"] and "Flip → Crop" in card["description"]
    (entry,) = tb.get("plugin/images/images", run=run, tag="augment/examples")
    from PIL import Image

    image = Image.open(io.BytesIO(tb.get("plugin/images/individualImage?" + entry["query"], raw=True)))
    assert image.size == (8 * 17 + 1, 4 * 17 + 1)  # 8 columns × 4 rows of 16-pixel images, 1-pixel padding


def test_captions_show_with_the_default_fast_loader(tmp_path, caplog):
    """The fast loader drops a legacy image's or histogram's description: the augmentation grid and init-stats
    histogram are written in their plugins' own format, so a user's plain `tensorboard --logdir` shows the captions,
    and reading the events back (as `deeprob compare` does) warns of no summary "not associated with a plugin"."""
    import logging
    import time

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard import SummaryWriter

    from deeprob_cli.components.augment import compose, log_examples

    writer = SummaryWriter(str(tmp_path / "run"))
    log_examples(writer, torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8), compose([]), 0)
    writer.close()
    log_histograms([torch.randn(50), torch.randn(50)], tmp_path / "init_stats")
    with caplog.at_level(logging.WARNING):
        EventAccumulator(str(tmp_path / "run")).Reload()
    assert "oddly" not in caplog.text
    with tensorboard(tmp_path, fast=True) as url:
        tb = Board(url)
        for _ in range(120):  # the data server loads in the background
            images, histograms = tb.get("plugin/images/tags"), tb.get("plugin/histograms/tags")
            if images and histograms:
                break
            time.sleep(0.25)
        assert "Top row: 8 training images" in images["run"]["augment/examples"]["description"]
        assert "step = layer index" in histograms["init_stats"]["activation/by_layer"]["description"]
        (entry,) = tb.get("plugin/images/images", run="run", tag="augment/examples")
        from PIL import Image

        query = dict(urllib.parse.parse_qsl(entry["query"]))
        image = Image.open(io.BytesIO(tb.get("plugin/images/individualImage", raw=True, **query)))
        assert image.size == (8 * 17 + 1, 4 * 17 + 1)  # 8 columns × 4 rows of 16-pixel images, 1-pixel padding


def test_init_stats_is_one_histogram_stepped_by_layer(board):
    tb, names, _, outputs = board
    tags = tb.get("plugin/histograms/tags")[names["init_stats"]]
    assert set(tags) == {"activation/by_layer"} and "step = layer index" in tags["activation/by_layer"]["description"]
    series = tb.get("plugin/histograms/histograms", run=names["init_stats"], tag="activation/by_layer")
    assert [step for _, step, _ in series] == list(range(1, len(outputs) + 1))
    for (_, _, buckets), y in zip(series, outputs):
        assert sum(count for _, _, count in buckets) == pytest.approx(y.numel())
        assert buckets[0][0] == pytest.approx(y.min().item(), abs=1e-6)
        assert buckets[-1][1] == pytest.approx(y.max().item(), abs=1e-6)
    widths = [buckets[-1][1] - buckets[0][0] for _, _, buckets in series]
    assert widths == sorted(widths, reverse=True)  # xavier + tanh: the distribution narrows layer by layer


def test_histograms_are_logged_at_the_snapshot_steps(board):
    tb, names, runs, _ = board
    series = tb.get("plugin/histograms/histograms", run=names["completed"], tag="activation/act1_1")
    # hist_every=3, 4 steps per epoch, 2 epochs: every third step and each epoch's last step
    assert [step for _, step, _ in series] == [0, 3, 6, 7]


def test_hparams_columns_put_what_varies_first_and_show_overridden_numbers(tmp_path):
    """Two jobs of a sweep over trainer.seed with optim.weight_decay set on the command line: the HParams tab
    (the server's experiment, whose column order the tab keeps) lists trainer.seed first, logs weight_decay, and
    leaves out a choice with no value (experiment=None)."""
    from deeprob_cli.monitor import overridden_numbers

    cfg = OmegaConf.create({"optim": {"lr": 0.1, "weight_decay": 5e-4}, "trainer": {"seed": 0}, "model": {"w": [8]}})
    assert overridden_numbers(["optim.weight_decay=5e-4", "model.w=[8]", "activation=tanh", "+x.y=1"], cfg) == {
        "optim.weight_decay": 5e-4}
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
    for seed in (0, 1):
        monitor = Monitor(tmp_path / f"trainer.seed={seed}", model, nn.ReLU, hist_every=0)
        monitor.hparams({"activation": "relu", "augment": "flip", "experiment": None, "optim.weight_decay": 5e-4,
                         "trainer.seed": seed}, final_metrics(val=True, test=False, tta=False), varied={"trainer.seed"})
        monitor.finish("completed", {"val_acc": 0.5}, 4)
    with tensorboard(tmp_path) as url:
        experiment = Board(url).post("plugin/hparams/experiment", {"experimentName": ""})
    names = [h["name"] for h in experiment["hparamInfos"]]
    assert names[0] == "trainer.seed" and "optim.weight_decay" in names and "experiment" not in names


def test_console_and_readme_link_tensorboard_with_smoothing_off():
    """Smoothing 0.6 (TensorBoard's default) reads a 4-epoch val accuracy of 0.50 as 0.46: the links turn it off."""
    from pathlib import Path

    from deeprob_cli.monitor import LINK

    assert "_smoothingWeight=0" in LINK and LINK.startswith("http://localhost:6006/#custom_scalars")
    assert LINK in (Path(__file__).parents[1] / "README.md").read_text()
    assert "LINK" in (Path(__file__).parents[1] / "deeprob_cli" / "train.py").read_text()
