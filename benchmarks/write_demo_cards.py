"""Write the model cards of the two demo models from what is known about them.

    python benchmarks/write_demo_cards.py     # models/demo*/model_ema.card.json

The weights are plain float16 state_dicts that store no flags, so the
configuration is the ``demo`` preset (the ``tiny`` network on a 4 mm grid; the
weights are checked to load strictly into it) with the default ``--suv_max``;
data, training and provenance come from ``models/*/README.md``, the validation
scores from ``models/*/progress.csv`` (none: those runs had no ``--val_dir``), and
the warm-start scale of ``models/demo_all_doses`` from its fit
(``docs/warm_start_validation.csv``, README.md "Warm start chosen from the noise").
The weights are only read.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from warm_start import simulated_description

from guided_diffusion import dist_util
from guided_diffusion.checkpoint import load_model_weights
from guided_diffusion.flags import add_dict_to_argparser, args_to_dict, parse_args_with_config
from guided_diffusion.model_card import fit_record, latest_validation, make_card, write_card
from guided_diffusion.pet.intensity import DEFAULT_SUV_MAX
from guided_diffusion.script_util import sr_create_model_and_diffusion, sr_model_and_diffusion_defaults
from guided_diffusion.warm_start import DEMO_WARM_START_SCALE

REPO = Path(__file__).resolve().parent.parent
PRESET = "demo"
SIX_DOSES = [1 / 2, 1 / 4, 1 / 10, 1 / 20, 1 / 50, 1 / 100]
SIMULATOR = {"generator": "scripts/make_phantoms.py", "scanner": ["simulator default"], "tracer": ["fdg"]}
WARM_START_COMMAND = (
    "python benchmarks/warm_start.py --config demo --model_path models/demo_all_doses/model_ema.pt "
    "--seeds 4000,4001 --starts 10,25,50,100,200 --from_noise_doses 1/4,1/100 --from_noise_steps 100 "
    "--out docs/warm_start_validation.csv"
)

#: Per model folder: training data, training, the warm-start fit and notes, from its README.md.
DEMOS = {
    "demo_all_doses": {
        "training_data": {"folder": "data/demo_all_doses", "num_pairs": 144, **SIMULATOR, "doses": SIX_DOSES,
                          "seeds": list(range(1, 13)), "num_subjects": 24},
        "training": {"step": 1750, "precision": "bf16", "lr": 2e-4, "batch_size": 8, "num_ranks": 1,
                     "ema_rate": "0.999"},
        "warm_start_scale": fit_record(
            DEMO_WARM_START_SCALE, fitted_by=WARM_START_COMMAND,
            fitted_on=simulated_description([4000, 4001], SIX_DOSES, 96.0),
            table="docs/warm_start_validation.csv", date="2026-11-27"),
        "notes": "The demo model of `make demo`, for simulated data only, not for clinical images. Made by "
                 "benchmarks/device_check.sh (step 3, TRAIN_SECONDS=300) on 2026-11-27 on one NVIDIA H100 "
                 "(docs/device_check_h100.log): crops of 96 x 96 x 32 voxels, stopped by the time limit at step "
                 "1950; these are the EMA weights of the step-1750 checkpoint, stored in float16. "
                 "See models/demo_all_doses/README.md.",
    },
    "demo": {
        "training_data": {"folder": "data/demo", "num_pairs": 112, **SIMULATOR, "doses": SIX_DOSES[1:5],
                          "seeds": list(range(1, 15)), "num_subjects": 28},
        "training": {"step": 1500, "precision": "bf16", "lr": 2e-4, "batch_size": 16, "num_ranks": 1,
                     "ema_rate": "0.999"},
        "warm_start_scale": None,
        "notes": "The earlier demo model, kept for the speed benchmarks; for simulated data only, not for clinical "
                 "images. Crops of 64 x 64 x 32 voxels on one NVIDIA H200; the EMA at step 1500, stored in "
                 "float16, with the share of the random initial weights (0.999^1500) removed from the raw EMA of a "
                 "run without EMA warm-up. See models/demo/README.md.",
    },
}


def demo_configuration() -> dict:
    """The flags of the ``demo`` preset as a training checkpoint stores them (with ``model_voxel_size``, ``suv_max``)."""
    keys = {**sr_model_and_diffusion_defaults(), "model_voxel_size": 0.0}
    parser = argparse.ArgumentParser()
    add_dict_to_argparser(parser, keys)
    configuration = args_to_dict(parse_args_with_config(parser, ["--config", PRESET]), keys)
    return {**configuration, "suv_max": DEFAULT_SUV_MAX}


def write_demo_card(name: str, configuration: dict) -> Path:
    """Check that ``models/<name>/model_ema.pt`` fits ``configuration``; write its card; return the card's path."""
    folder = REPO / "models" / name
    weights = folder / "model_ema.pt"
    network_flags = {k: v for k, v in configuration.items() if k in sr_model_and_diffusion_defaults()}
    model, _ = sr_create_model_and_diffusion(**network_flags)
    load_model_weights(model, weights)
    demo = DEMOS[name]
    card = make_card(weights, kind="ema", configuration=configuration,
                     model_voxel_size_mm=configuration["model_voxel_size"], suv_max=configuration["suv_max"],
                     training_data=demo["training_data"], training=demo["training"],
                     validation=latest_validation(folder / "progress.csv"),
                     warm_start_scale=demo["warm_start_scale"], notes=demo["notes"])
    return write_card(weights, card)


def main() -> None:
    configuration = demo_configuration()
    for name in DEMOS:
        print(f"wrote {write_demo_card(name, configuration).relative_to(REPO)}")


if __name__ == "__main__":
    dist_util.run_main(main)
