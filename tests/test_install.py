"""A non-editable install carries the ``--config`` presets (configs/*.yaml) as package data."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
import yaml
from conftest import REPO

pytestmark = pytest.mark.slow

PROBE = """
import sys
import guided_diffusion
from guided_diffusion.flags import load_config
print(guided_diffusion.__file__)
print(load_config("paper")["num_channels"], load_config("tiny")["num_channels"])
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> str:
    """``pip install --target`` of a copy of the source tree (no build files land in the checkout)."""
    root = tmp_path_factory.mktemp("install")
    source = root / "source"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for name in ("guided_diffusion", "configs"):
        shutil.copytree(REPO / name, source / name, ignore=ignore)
    shutil.copy(REPO / "setup.py", source / "setup.py")
    target = root / "site"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(target), str(source)],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stderr
    return str(target)


def _run(command: list[str], site: str, cwd) -> subprocess.CompletedProcess:
    """``command`` with the installed copy first on ``sys.path``, away from the checkout."""
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": site, "OMP_NUM_THREADS": "1", "PYTHONNOUSERSITE": "1"}
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=env, check=False)


def test_installed_package_finds_the_presets(installed, tmp_path):
    result = _run([sys.executable, "-c", PROBE], installed, tmp_path)
    assert result.returncode == 0, result.stderr
    location, values = result.stdout.splitlines()
    assert location.startswith(installed), "the installed copy, not the checkout, must be imported"
    paper = yaml.safe_load((REPO / "configs" / "paper.yaml").read_text())
    assert paper["num_channels"] == 128
    assert values.split() == ["128", "32"]


def test_script_run_from_another_folder_reads_the_preset(installed, tmp_path):
    result = _run([sys.executable, str(REPO / "scripts" / "train.py"), "--config", "paper"], installed, tmp_path)
    # The preset is read; the run stops at the first flag it still needs.
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == ["error: --data_dir is required: the folder holding the training pairs"]
