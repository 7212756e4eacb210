"""Shared test helpers: the reference fixture and its weight/input rules, the slow/mpi marks, a fake bucket,
benchmark scripts imported as modules."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

FIXTURE = Path(__file__).parent / "fixtures" / "reference_unet3d.json"
REPO = Path(__file__).resolve().parent.parent

@contextlib.contextmanager
def benchmark_module(name: str) -> Iterator[ModuleType]:
    """``benchmarks/<name>.py`` imported as module ``name``, its folder on ``sys.path`` as when it runs; both
    undone afterwards."""
    folder = str(REPO / "benchmarks")
    sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[name]
        sys.path.remove(folder)


#: Test files whose tests launch ``mpiexec`` (marked ``mpi``; single tests elsewhere carry the mark themselves).
MPI_FILES = ("test_training_mpi.py", "test_denoise_cli.py", "test_denoise_clinical.py", "test_dist_util.py")
#: Test functions whose runs (all parameters) take more than about 3 s on 2 idle cores (``--durations``),
#: by file; a file of slow tests only marks itself (``pytestmark``).
SLOW_TESTS = {
    "test_training.py": (
        "test_overfits_one_pair", "test_script_refuses_bad_data_with_one_line",
        "test_training_checkpoint_is_accepted_by_the_denoising_script",
    ),
    "test_simulation.py": ("test_make_phantoms_writes_pairs",),
    "test_sampler_quality.py": ("test_every_setting_starts_where_the_full_chain_does",),
    "test_warm_start.py": ("test_the_scale_is_fitted_on_pairs_from_disk",),
    "test_volume_timing.py": ("test_one_setting_runs_the_denoising_script_and_reports_its_evaluations",),
    "test_evaluate_cli.py": (
        "test_one_case_with_two_results_labels_and_lesions", "test_cases_csv_with_two_doses_and_grouping_columns",
        "test_a_refusal_from_the_command_line",
    ),
    "test_format_registry.py": ("test_a_registered_format_trains_and_denoises_through_the_scripts",),
    "test_paper_api.py": ("test_a_paper_style_script_samples_on_two_ranks_and_gathers_them",),
    "test_faults_writing.py": (
        "test_two_concurrent_runs_into_one_folder_never_mix",
        "test_overwrite_replaces_the_whole_set_and_a_stale_sd_map_is_never_kept",
        "test_sigterm_during_sampling_leaves_no_temporary_files",
        "test_sigterm_during_sampling_on_two_ranks_leaves_no_temporary_files",
    ),
    "test_faults_nonfinite.py": (
        "test_the_training_script_refuses_bad_learning_rates_before_touching_data",
        "test_the_training_script_stops_a_run_that_diverges", "test_a_nan_on_one_rank_stops_every_rank",
        "test_a_missing_or_unreadable_checkpoint_is_reported_before_the_data_cache_is_written",
        "test_a_plain_state_dict_given_to_resume_is_refused_before_the_data_cache_is_written",
        "test_a_nan_model_writes_nothing",
    ),
}

torch.set_num_threads(2)


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects by these marks
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests of :data:`MPI_FILES` ``mpi`` and those of :data:`SLOW_TESTS` ``slow``.

    A listed file or test that no longer exists is an error, so the lists cannot go stale silently.
    """
    here = Path(__file__).parent
    missing = [name for name in (*MPI_FILES, *SLOW_TESTS) if not (here / name).is_file()]
    missing += [f"{file}::{test}" for file, tests in SLOW_TESTS.items() if (here / file).is_file()
                for test in tests if f"def {test}(" not in (here / file).read_text()]
    if missing:
        raise pytest.UsageError(f"tests/conftest.py lists tests that do not exist: {', '.join(missing)}")
    for item in items:
        if item.path.name in MPI_FILES:
            item.add_marker(pytest.mark.mpi)
        if getattr(item, "originalname", item.name) in SLOW_TESTS.get(item.path.name, ()):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def reference() -> dict:
    return json.loads(FIXTURE.read_text())


def sine_pattern(shape, freq: float, phase: float, scale: float = 1.0, offset: float = 0.0) -> torch.Tensor:
    """offset + scale * sin(freq * j + phase) over the flat index j, computed in float64, as float32."""
    j = np.arange(int(np.prod(shape)), dtype=np.float64)
    return torch.from_numpy((offset + scale * np.sin(freq * j + phase)).astype(np.float32).reshape(shape))


def apply_weight_rule(model: torch.nn.Module) -> None:
    """Set entry i (sorted key order) of the state_dict to 0.05 * sin(0.37 j + 1.3 i)."""
    state = model.state_dict()
    model.load_state_dict(
        {key: sine_pattern(state[key].shape, 0.37, 1.3 * i, scale=0.05) for i, key in enumerate(sorted(state))}
    )


class FakeBucket:
    """Stands for blobfile's cloud side: objects in a dict, no network.

    Like an object store, an upload is published only when its file closes, and,
    like blobfile's default (``partial_writes_on_exc=True``), also when the
    writing code raised, unless the caller asks otherwise.
    """

    def __init__(self):
        self.objects: dict[str, bytes] = {}

    def exists(self, path: str) -> bool:
        return path in self.objects or self.isdir(path)

    def isdir(self, path: str) -> bool:
        prefix = path.rstrip("/") + "/"
        return any(key.startswith(prefix) for key in self.objects)

    def listdir(self, path: str) -> list[str]:
        prefix = path.rstrip("/") + "/"
        rest = [key[len(prefix):] for key in self.objects if key.startswith(prefix)]
        return sorted({name.split("/")[0] + ("/" if "/" in name else "") for name in rest})

    def makedirs(self, path: str) -> None:
        pass

    def remove(self, path: str) -> None:
        del self.objects[path]

    def BlobFile(self, path: str, mode: str, partial_writes_on_exc: bool = True):
        if mode == "rb":
            if path not in self.objects:
                raise FileNotFoundError(path)
            return io.BytesIO(self.objects[path])
        assert mode in ("wb", "ab"), mode
        return _Upload(self, path, self.objects.get(path, b"") if mode == "ab" else b"", partial_writes_on_exc)


class _Upload(io.BytesIO):
    def __init__(self, bucket: FakeBucket, path: str, start: bytes, partial_writes_on_exc: bool):
        super().__init__()
        self.write(start)
        self.bucket, self.path, self.partial_writes_on_exc = bucket, path, partial_writes_on_exc

    def __exit__(self, exc_type, exc, traceback):
        if exc_type is None or self.partial_writes_on_exc:
            self.bucket.objects[self.path] = self.getvalue()
        return super().__exit__(exc_type, exc, traceback)


@pytest.fixture
def bucket(monkeypatch) -> FakeBucket:
    """Route blobfile's calls for ``gs://`` paths to a :class:`FakeBucket`."""
    import blobfile

    fake = FakeBucket()
    for name in ("exists", "isdir", "listdir", "makedirs", "remove", "BlobFile"):
        monkeypatch.setattr(blobfile, name, getattr(fake, name))
    return fake
