"""The config tree is found from a built wheel installed into another environment, not only from the checkout."""
import subprocess
import sys
import sysconfig
import venv

import pytest

from conftest import REPO


@pytest.mark.slow  # builds and installs a wheel: make test-all
def test_wheel_installed_elsewhere_finds_its_config(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path / "dist"), str(REPO)], check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("deeprob-*.whl")
    import zipfile

    names = set(zipfile.ZipFile(wheel).namelist())
    for package in [*REPO.glob("deeprob_cli/**/__init__.py"), *REPO.glob("hydra_plugins/*/__init__.py")]:
        assert str(package.relative_to(REPO)) in names, package  # every sub-package travels in the wheel
    assert {f"deeprob_cli/conf/{p.relative_to(REPO / 'conf')}" for p in (REPO / "conf").rglob("*.yaml")} <= names
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)  # this interpreter's pip installs into it (--python)
    bin_dir = env_dir / "bin"
    # the heavy dependencies come from this interpreter's site-packages; the wheel itself is installed for real
    site = subprocess.run([bin_dir / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    with open(f"{site}/deps.pth", "w") as f:
        f.write(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(bin_dir / "python"), "install", "--no-deps", "-q",
                    str(wheel)], check=True, capture_output=True)
    work = tmp_path / "elsewhere"
    work.mkdir()
    out = subprocess.run([bin_dir / "deeprob", "train", "activation=tanh", "--cfg", "job"], cwd=work,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "torch.nn.Tanh" in out.stdout
    where = subprocess.run([bin_dir / "python", "-c", "import deeprob_cli.config as c; print(c.CONFIG_DIR)"],
                           cwd=work, capture_output=True, text=True, check=True).stdout.strip()
    assert where.startswith(site) and where.endswith("deeprob_cli/conf")
    run = subprocess.run([bin_dir / "deeprob", "train", "dataset=synthetic", "model=mlp", "trainer.epochs=1"],
                         cwd=work, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert list((work / "runs").rglob("summary.json"))
    for command in (["lab", "--list"], ["init-stats", "--help"], ["train", "hydra/launcher=slurm", "--cfg", "hydra"]):
        result = subprocess.run([bin_dir / "deeprob", *command], cwd=work, capture_output=True, text=True)
        assert result.returncode == 0, (command, result.stderr)  # every sub-package and plugin is in the wheel
