"""Model cards beside checkpoints: the path rule, reading and writing, updating only one's own weights, the cards
training writes (and prunes), the data description, the show CLI and the committed demo cards."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from conftest import REPO
from test_training import PATCH, train
from training_helpers import TINY_NET, run_train, write_npz_pair

from guided_diffusion.checkpoint import load_model_weights, read_checkpoint
from guided_diffusion.errors import UserError
from guided_diffusion.model_card import (
    CARD_FORMAT,
    card_path,
    file_sha256,
    fit_record,
    make_card,
    read_card,
    read_own_card,
    update_card,
    write_card,
)
from guided_diffusion.pet.training.data_description import describe_pairs
from guided_diffusion.pet.training.pairs import find_pairs, prepare_pairs
from guided_diffusion.script_util import sr_create_model_and_diffusion
from guided_diffusion.warm_start import DEMO_WARM_START_SCALE

DEMOS = ("demo", "demo_all_doses")


def weights_file(path: Path, value: float = 0.0) -> Path:
    """A tiny plain state_dict at ``path``; ``value`` makes other weights."""
    torch.save({"w": torch.full((2, 3), value)}, path)
    return path


def card_for(path: Path, **fields) -> dict:
    return make_card(path, kind="ema", configuration={"num_channels": 32, "model_voxel_size": 4.0},
                     model_voxel_size_mm=4.0, suv_max=16.0, **fields)


@pytest.mark.parametrize("checkpoint, expected", [
    ("run/ema_0.9999_0000003.pt", Path("run/ema_0.9999_0000003.card.json")),
    ("model.pth", Path("model.card.json")),
    ("weights", Path("weights.card.json")),
    ("gs://bucket/run/checkpoint_0000002.pt", "gs://bucket/run/checkpoint_0000002.card.json"),
])
def test_the_card_of_x_pt_is_x_card_json(checkpoint, expected):
    assert card_path(checkpoint) == expected


def test_the_card_path_of_a_path_is_a_path(tmp_path):
    assert card_path(tmp_path / "model_ema.pt") == tmp_path / "model_ema.card.json"


def test_a_card_round_trips_and_belongs_to_its_weights(tmp_path):
    weights = weights_file(tmp_path / "model_ema.pt")
    assert read_card(weights) is None
    card = card_for(weights, validation={"step": 2, "val_psnr": float("nan")})
    assert write_card(weights, card) == tmp_path / "model_ema.card.json"
    back = read_card(weights)
    assert back["format"] == CARD_FORMAT and back["model_kind"] == "diffusion"
    assert back["weights"] == {"file": "model_ema.pt", "sha256": file_sha256(weights), "kind": "ema"}
    assert back["validation"] == {"step": 2, "val_psnr": None}  # JSON has no NaN
    assert {k: v for k, v in back.items() if k != "validation"} == {k: v for k, v in card.items() if k != "validation"}
    assert read_own_card(weights) == back
    assert not list(tmp_path.glob(".*"))  # written through a temporary file, then renamed


def test_a_card_in_a_bucket(bucket):
    path = "gs://bucket/run/ema_0.9_0000002.pt"
    bucket.objects[path] = b"weights"
    write_card(path, {"format": CARD_FORMAT, "weights": {"sha256": file_sha256(path)}})
    assert json.loads(bucket.objects["gs://bucket/run/ema_0.9_0000002.card.json"])["format"] == CARD_FORMAT
    assert read_own_card(path)["weights"]["sha256"] == file_sha256(path)


@pytest.mark.parametrize("text", ["{not json", json.dumps({"format": "something-else"}), "[1, 2]"])
def test_a_corrupt_card_is_refused_in_one_line(tmp_path, text):
    weights = weights_file(tmp_path / "model.pt")
    (tmp_path / "model.card.json").write_text(text)
    with pytest.raises(UserError, match=r"model card .*model\.card\.json") as err:
        read_card(weights)
    assert "\n" not in str(err.value)


def test_update_changes_only_its_sections_and_refuses_other_weights(tmp_path):
    weights = weights_file(tmp_path / "model_ema.pt")
    write_card(weights, card_for(weights, notes="kept"))
    scale = fit_record(5.0, fitted_by="python benchmarks/warm_start.py", fitted_on="data/val", table="t.csv",
                       date="2026-01-02")
    updated = update_card(weights, warm_start_scale=scale)
    assert read_card(weights) == updated
    assert updated["warm_start_scale"] == {"value": 5.0, "fitted_by": "python benchmarks/warm_start.py",
                                           "fitted_on": "data/val", "date": "2026-01-02", "table": "t.csv"}
    assert updated["notes"] == "kept" and updated["model_voxel_size_mm"] == 4.0
    calibration = fit_record(1.3, fitted_by="x", fitted_on="y", table=[], key="factor")
    assert update_card(weights, uncertainty_calibration=calibration)["uncertainty_calibration"]["factor"] == 1.3
    with pytest.raises(ValueError, match="weights"):
        update_card(weights, weights={"sha256": "0"})

    weights_file(weights, value=1.0)  # new weights under the old name: the card is another file's
    with pytest.raises(UserError, match="belongs to other weights") as err:
        update_card(weights, notes="changed")
    assert "\n" not in str(err.value)
    assert read_card(weights)["notes"] == "kept"


def test_update_without_a_card_starts_one_from_the_weights(tmp_path):
    ema = weights_file(tmp_path / "ema_0.9_0000002.pt")
    card = update_card(ema, notes="fitted")
    assert card["weights"]["kind"] == "ema" and card["configuration"] is None and card["notes"] == "fitted"
    assert update_card(weights_file(tmp_path / "model.pt"))["weights"]["kind"] == "model"
    with pytest.raises(UserError, match="does not exist"):
        update_card(tmp_path / "missing.pt", notes="")


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pairs")
    write_npz_pair(folder / "a.npz", shape=(8, 8, 8))
    return prepare_pairs(find_pairs(folder), folder / "cache", PATCH)


class CountingEvaluator:
    """Validation whose score is the number of evaluations so far (1, 2, ...)."""

    metric_names = ("val_psnr",)

    def __init__(self):
        self.calls = 0

    def __len__(self) -> int:
        return 1

    def evaluate(self, model, indices) -> list[dict[str, float]]:
        self.calls += 1
        return [{"val_psnr": float(self.calls)} for _ in indices]


@pytest.mark.slow
def test_training_writes_a_card_beside_every_checkpoint_and_ema_file(pairs, tmp_path):
    evaluator = CountingEvaluator()
    stale = tmp_path / ".checkpoint_0000009.card.json.x1y2.tmp.card.json"  # left by a killed save
    stale.write_text("{")
    train(pairs, tmp_path, evaluator=evaluator, max_steps=3, save_interval=1, keep_last=2, val_interval=2,
          ema_rate="0.99,0.9")
    assert not stale.exists()
    kept = {f"{kind}_{step:07d}" for kind in ("checkpoint", "ema_0.99", "ema_0.9") for step in (2, 3)}
    assert {p.name for p in tmp_path.glob("*.pt")} == {f"{name}.pt" for name in kept}
    assert {p.name for p in tmp_path.glob("*.card.json")} == {f"{name}.card.json" for name in kept}  # pruned too
    flags = read_checkpoint(tmp_path / "checkpoint_0000003.pt")["flags"]
    for name in kept:
        card = read_own_card(tmp_path / f"{name}.pt")
        step, rate = int(name[-7:]), "0.9" if name.startswith("ema_0.9_") else "0.99"
        assert card["weights"]["kind"] == ("checkpoint" if name.startswith("checkpoint") else "ema")
        assert card["configuration"] == flags and card["intensity"]["suv_max"] is None  # not in these flags
        assert card["training"] == {"step": step, "precision": "fp32", "lr": 1e-4, "batch_size": 2, "num_ranks": 1,
                                    "ema_rate": rate}
        # Validation scores the first rate's EMA, which a checkpoint gives by default (at steps 2 and 3, the last).
        if rate == "0.99":
            assert card["validation"] == {"step": step, "val_psnr": step - 1.0}
        else:
            assert card["validation"] is None
        assert card["warm_start_scale"] is None and card["uncertainty_calibration"] is None


def write_phantom_folder(folder: Path) -> None:
    """Two pairs, with the manifest.json that scripts/make_phantoms.py writes beside its pairs (the parts read)."""
    for dose in ("1-4", "1-20"):
        write_npz_pair(folder / f"subject000_dose{dose}.npz")
    manifest = {"generator": "scripts/make_phantoms.py", "dose_levels": [1.0, 0.25, 0.05],
                "arguments": {"seed": 7, "num_subjects": 1, "scanner": None, "tracer": "fdg"}}
    (folder / "manifest.json").write_text(json.dumps(manifest))


def test_the_data_description_reads_what_the_pairs_say(tmp_path):
    write_phantom_folder(tmp_path / "sim")
    (tmp_path / "own").mkdir()
    write_npz_pair(tmp_path / "own" / "x.npz")
    (tmp_path / "own" / "pairs.csv").write_text("low_dose,full_dose,dose_fraction\nx.npz,x.npz,0.1\n")
    sim = describe_pairs(tmp_path / "sim", find_pairs(tmp_path / "sim"))
    assert sim == {"folder": str(tmp_path / "sim"), "num_pairs": 2, "generator": "scripts/make_phantoms.py",
                   "scanner": ["simulator default"], "tracer": ["fdg"], "doses": [0.25, 0.05], "seeds": [7],
                   "num_subjects": 1}
    own = describe_pairs(tmp_path / "own", [])
    assert own["doses"] == [0.1] and own["generator"] is None and own["seeds"] is None


@pytest.mark.slow
def test_the_training_script_records_the_data_and_intensity_scale(tmp_path):
    write_phantom_folder(tmp_path / "data")
    result = run_train([*TINY_NET, "--data_dir", str(tmp_path / "data"), "--result_folder", str(tmp_path / "run"),
                        "--max_steps", "1", "--batch_size", "1", "--num_workers", "0", "--suv_max", "12"])
    assert result.returncode == 0, result.stderr
    card = read_own_card(tmp_path / "run" / "ema_0.9999_0000001.pt")
    assert card["intensity"]["suv_max"] == 12.0 and card["model_voxel_size_mm"] == 1.0
    assert card["training_data"]["num_pairs"] == 2 and card["training_data"]["doses"] == [0.25, 0.05]
    assert "training_data" not in card["configuration"] and card["configuration"]["suv_max"] == 12.0


@pytest.mark.parametrize("name", DEMOS)
def test_the_committed_demo_cards_belong_to_their_weights(name):
    weights = REPO / "models" / name / "model_ema.pt"
    card = read_own_card(weights)  # refuses a card whose sha256 is another file's
    assert card is not None and card["weights"]["file"] == "model_ema.pt"
    configuration = card["configuration"]
    model, _ = sr_create_model_and_diffusion(**{k: v for k, v in configuration.items()
                                                if k not in ("model_voxel_size", "suv_max")})
    load_model_weights(model, weights)
    assert card["model_voxel_size_mm"] == configuration["model_voxel_size"] == 4.0
    scale = card["warm_start_scale"]
    assert (scale["value"] if scale else None) == (DEMO_WARM_START_SCALE if name == "demo_all_doses" else None)


def test_the_show_command_prints_the_card(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("model_card_cli", REPO / "scripts" / "model_card.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    bare = weights_file(tmp_path / "bare.pt")
    cli.main([str(REPO / "models" / "demo_all_doses" / "model_ema.pt"), str(bare)])
    out = capsys.readouterr().out
    assert "sha256 matches" in out and '"value": 6.3' in out
    assert out.rstrip().endswith(f"{bare}: no model card ({tmp_path / 'bare.card.json'})")
