# deeprob: `make install`, then `make test`; see README.md.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
ARGS   ?=
LECTURE_DATA ?= /tmp/data/cifar10-jpeg

.PHONY: install test test-all test-slurm train tensorboard bench bench-gpu lecture readme clean

install:  ## virtual environment + dependencies + the `deeprob` command (editable)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# compat: the checkout itself goes on sys.path, so Hydra's plugin scan finds hydra_plugins/deeprob_launcher
	# (setuptools' default editable finder hides namespace packages from that scan: hydra/launcher=slurm unknown)
	$(BIN)/pip install --quiet -e ".[dev]" --config-settings editable_mode=compat
	@echo "installed: activate with '. $(VENV)/bin/activate', then run 'deeprob --help'"

test:  ## the default (fast) test suite, two test processes side by side
	$(BIN)/python -m pytest -q -n 2

test-all:  ## every test, slow ones included
	$(BIN)/python -m pytest -q -n 2 -m "not gpu"

test-slurm:  ## on a real single-node Slurm started by tests/slurm/cluster.sh (as root; apt-installs slurm if missing)
	$(BIN)/python -m pytest -q -p no:xdist -m slurm tests/test_slurm.py

train:  ## make train ARGS="activation=gelu trainer.epochs=2"
	$(BIN)/deeprob train $(ARGS)

tensorboard:
	$(BIN)/tensorboard --logdir runs

bench:  ## training and data-pipeline throughput on this machine (ARGS=--quick: about a minute)
	$(BIN)/python benchmarks/bench.py $(ARGS)

bench-gpu:  ## CUDA images/s and time to 94 % (ARGS="--data PATH --preset fast_wide --compile")
	$(BIN)/python benchmarks/bench_gpu.py $(ARGS)

clean:  ## remove run outputs and build debris (keeps the venv)
	find runs -mindepth 1 ! -name README.md -exec rm -rf {} +
	rm -rf build dist *.egg-info .pytest_cache

lecture:  ## every claim of the lecture decided on real data (paired seeds; ≤ 40 min on 2 idle cores; prints each claim's seconds) → runs/lecture/REPORT.md
	rm -rf runs/lecture
	$(BIN)/python -m deeprob_cli lab --all dataset=image_folder dataset.root=$(LECTURE_DATA) out=runs/lecture $(ARGS)

readme:  ## regenerate README's table of config groups from conf/
	$(BIN)/python -m deeprob_cli.docs
