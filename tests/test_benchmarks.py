"""benchmarks/: the throughput scripts run and print figures that parse and are positive (all slow: they time).

    PYTHONPATH=. python benchmarks/bench.py --quick          # what test_bench_quick_prints_every_figure runs
"""
import importlib
import re
import subprocess
import sys

import pytest
import torch

from conftest import REPO

pytestmark = pytest.mark.slow
NUMBER = r"(\d+(?:\.\d+)?)"


@pytest.fixture(scope="module")
def bench():
    """benchmarks/bench.py and bench_data.py as modules (they import each other from their own folder)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        yield importlib.import_module("bench"), importlib.import_module("bench_data")
    finally:
        sys.path.remove(str(REPO / "benchmarks"))


def test_bench_functions_measure_positive_rates_on_tiny_settings(bench, capsys):
    """Each measuring function of bench.py / bench_data.py on a few tiny batches: a finite positive images/s, and
    the training line it prints carries the summary's own figures."""
    bench, bench_data = bench
    images = torch.randint(0, 256, (64, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    rates = {"batched": bench.batched_rate(images, 16, 2), "dataloader": bench.torchvision_rate(images, 16, 0, 2),
             **bench_data.augment_rates(images, ("[flip,crop]", "randaugment"), 16, 2)}
    assert all(0 < r < float("inf") for r in rates.values()), rates
    calls = []
    assert bench_data.images_per_second(lambda b: calls.append(len(b)), images[:16], 3) > 0
    assert calls == [16] * 4  # one warm-up, then the timed repeats

    s = bench.run(["dataset=synthetic", "dataset.num_train=320", "dataset.val_size=64", "trainer.epochs=1",
                   "trainer.device=cpu", "log.progress=false", "log.hist_every=0", "model.widths=[8,16]",
                   "trainer.precision=fp32"], "tiny")
    line = capsys.readouterr().out.strip().splitlines()[-1]
    match = re.fullmatch(rf"tiny\s+{NUMBER} images/s\s+{NUMBER} s\s+val_acc {NUMBER}\s+\[fp32\]", line.strip())
    assert match, line
    assert float(match[1]) == pytest.approx(s["images_per_second"], abs=0.5) and float(match[1]) > 0
    assert float(match[3]) == pytest.approx(s["val_acc"], abs=5e-4) and s["steps"] == 256 // 128


def test_bench_gpu_without_cuda_says_so_and_exits_0():
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: bench_gpu.py would measure it")
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_gpu.py")], capture_output=True,
                            text=True, timeout=120, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0 and "no CUDA device here" in result.stdout


def test_bench_quick_prints_every_figure(tmp_path):
    """`bench.py --quick` end to end (about a minute on 2 idle cores): every figure it prints parses, is positive,
    and the ratios it prints are the ratios of the figures above them."""
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench.py"), "--quick"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=1200,
                            env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "DEEPROB_CACHE": str(tmp_path)})
    assert result.returncode == 0, result.stderr[-3000:]
    check_bench_output(result.stdout)


def check_bench_output(out: str):
    """Every figure of bench.py's report parses and is positive; its printed ratios match its printed figures."""
    runs = {label: (float(rate), float(seconds))
            for label, rate, seconds in re.findall(rf"^  (\S.*?\S)\s+{NUMBER} images/s\s+{NUMBER} s", out, re.M)}
    assert set(runs) == {"default recipe, fp32", "default recipe, bf16", "fast recipe, fp32", "fast recipe, bf16",
                         "default logging (log.hist_every=200)", "no histograms (log.hist_every=0)"}, out
    assert all(rate > 0 and seconds > 0 for rate, seconds in runs.values()), out
    for recipe in ("default", "fast"):
        (ratio,) = re.findall(rf"^  {recipe}: bf16 / fp32 = {NUMBER}×", out, re.M)
        expected = runs[f"{recipe} recipe, bf16"][0] / runs[f"{recipe} recipe, fp32"][0]
        assert float(ratio) == pytest.approx(expected, rel=0.02, abs=0.01), out  # printed from unrounded figures
    pipeline = re.findall(rf"^  (batched.*?|torchvision.*?)\s+{NUMBER}(?:\s|$)", out, re.M)
    assert len(pipeline) == 5 and all(float(rate) > 0 for _, rate in pipeline), out
    assert re.search(rf"^peak memory \(maxrss\) {NUMBER} MiB", out, re.M), out
    (preset, bare, ratio), = re.findall(rf"^  experiment=fast\s+{NUMBER} images/s\s+bare loop\s+{NUMBER} images/s\s+"
                                       rf"preset / bare = {NUMBER}", out, re.M)
    assert float(preset) > 0 and float(ratio) == pytest.approx(float(preset) / float(bare), rel=0.01, abs=2e-3), out


def test_overhead_line_compares_the_preset_with_the_bare_loop_on_tiny_settings(bench):
    """bench_overhead.overhead on a few tiny steps: both rates positive, the printed ratio theirs."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        bench_overhead = importlib.import_module("bench_overhead")
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    tiny = ["experiment=fast", "dataset=synthetic", "dataset.num_train=320", "dataset.val_size=64",
            "trainer.batch_size=64", "model.widths=[8,16]", "trainer.epochs=1", "trainer.device=cpu",
            "log.progress=false", "tta=none"]
    assert bench_overhead.bare_rate(tiny) > 0
    line = bench_overhead.overhead(tiny, 1)
    preset, bare, ratio = map(float, re.findall(rf"{NUMBER} images/s\s+bare loop\s+{NUMBER} images/s\s+preset / "
                                                rf"bare = {NUMBER}", line)[0])
    assert preset > 0 and bare > 0 and ratio == pytest.approx(preset / bare, rel=0.01, abs=2e-3)
