"""A value the start-up check accepts runs to the end: each range is the real one (the code's own limits), so the
values just past it are refused before anything is written and the values at it complete a run."""
import pytest

from conftest import run_cli, summary

RUN = ["dataset=synthetic", "dataset.num_train=320", "dataset.val_size=64", "model=mlp", "model.width=16",
       "trainer.epochs=1", "trainer.batch_size=64", "log.hist_every=0"]
EDGES = [  # (past the range: refused, at its edge: runs)
    ("schedule.warmup", ["schedule=onecycle", "schedule.warmup=1.0"], ["schedule=onecycle", "schedule.warmup=0.99"]),
    ("trainer.seed", ["trainer.seed=4294967296"], ["trainer.seed=4294967295"]),
    ("tta.shift", ["tta=flip_translate", "tta.shift=100000"], ["tta=flip_translate", "tta.shift=15"]),  # 16 px
    # what the optimizer forms from two values must fit float32 (the parameters' type)
    ("optim: lr = 1e-39", ["optim.lr=1e-39"], ["optim.lr=1.2e-38"]),
    ("optim: weight_decay + step_decay ÷ lr", ["optim.lr=1e-30", "optim.step_decay=1e10"],
     ["optim.lr=1e-30", "optim.step_decay=1e-32"]),
]


@pytest.mark.parametrize("key,past,edge", EDGES, ids=[e[0] for e in EDGES])
def test_past_the_range_is_refused_at_start_and_the_edge_runs_to_the_end(tmp_path, key, past, edge):
    bad = run_cli("train", *RUN, *past, "hydra.run.dir=bad", cwd=tmp_path, check=False)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and key in bad.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "bad").exists()
    run_cli("train", *RUN, *edge, "hydra.run.dir=good", cwd=tmp_path)
    s = summary(tmp_path / "good")
    assert s["status"] == "completed" and 0 <= s["val_acc"] <= 1
