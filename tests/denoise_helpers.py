"""Running scripts/test.py in tests: a tiny network with random weights and the command line around it."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import torch

from guided_diffusion import dist_util
from guided_diffusion.script_util import sr_create_model_and_diffusion, sr_model_and_diffusion_defaults

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
MODEL_FLAGS = ["--num_channels", "32", "--num_res_blocks", "1", "--channel_mult", "1,2", "--learn_sigma", "True",
               "--resblock_updown", "True", "--attention_resolutions", "1000", "--diffusion_steps", "100"]
FAST = ["--timestep_respacing", "ddim3", "--patch_axial", "8", "--max_patch_inplane", "8", "--patch_overlap", "3"]


def run(args: list[str], ranks: int = 1, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """scripts/test.py with MODEL_FLAGS and ``args``, under ``mpiexec -n ranks`` (plain python for 0)."""
    command = [sys.executable, str(REPO / "scripts" / "test.py"), *MODEL_FLAGS, *args]
    if ranks:
        command = [str(BIN / "mpiexec"), "-n", str(ranks), *command]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PATH": f"{BIN}:{os.environ['PATH']}"}
    return subprocess.run(command, check=False, capture_output=True, text=True, timeout=240, cwd=cwd, env=env)


def write_random_model(path: Path) -> Path:
    """Save the MODEL_FLAGS network with random weights (no zero layers: the output depends on the input)."""
    flags = dict(sr_model_and_diffusion_defaults())
    for name, value in zip(MODEL_FLAGS[::2], MODEL_FLAGS[1::2]):
        key = name[2:]
        flags[key] = type(flags[key])(value) if not isinstance(flags[key], bool) else value == "True"
    torch.manual_seed(0)
    model, _ = sr_create_model_and_diffusion(**flags)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.05)
    torch.save(model.state_dict(), path)
    return path


def denoising_script(monkeypatch=None) -> ModuleType:
    """scripts/test.py imported as a module (registered in ``sys.modules`` through ``monkeypatch`` when given)."""
    spec = importlib.util.spec_from_file_location("denoise_script", REPO / "scripts" / "test.py")
    module = importlib.util.module_from_spec(spec)
    if monkeypatch is not None:
        monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


def run_in_process(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """scripts/test.py's main in this process, so a test may patch what it calls (a registry, a writer):
    its exit status and stderr."""
    module = denoising_script(monkeypatch)
    monkeypatch.setattr(sys, "argv", ["test.py", *map(str, args)])
    try:
        dist_util.run_main(module.main)
        status = 0
    except SystemExit as exit_info:
        status = exit_info.code
    return status, capsys.readouterr().err
