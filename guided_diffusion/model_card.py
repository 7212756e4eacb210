"""Model cards: what a checkpoint was trained on and validated for, in a JSON file beside it.

The card of ``X.pt`` is ``X.card.json`` in the same folder (or bucket), see
:func:`card_path`. Training writes one beside every checkpoint and EMA file;
``benchmarks/warm_start.py`` adds the warm-start scale it fits; ``python
scripts/model_card.py X.pt`` shows one. Settings are taken from the command
line, then the card, then the preset.

Fields (JSON; a value that is not known is ``null``):

* ``format``: :data:`CARD_FORMAT`.
* ``model_kind``: ``"diffusion"``, ``"regression"`` or ``"gan"`` (the flag ``--model_kind``).
* ``configuration``: the model and diffusion flags as the checkpoint stores them
  (``sr_create_model_and_diffusion`` takes them, with ``model_voxel_size``,
  ``suv_max`` and ``data_scale`` beside them); ``null`` for a plain state_dict that stores none.
* ``model_voxel_size_mm``: the isotropic voxel size (mm) of the grid the network
  was trained on; inputs are resampled to it.
* ``intensity``: ``{"suv_max", "data_scale", "model_value"}``: the network sees
  ``clip(SUV, 0, suv_max) / data_scale`` (:mod:`guided_diffusion.pet.intensity`); the
  data scale is the configuration's ``data_scale``, or ``suv_max`` where it records
  none (models trained before ``--data_scale``, which divided by their clip).
* ``training_data``: ``{"folder", "num_pairs", "generator", "scanner", "tracer",
  "doses", "seeds", "num_subjects"}``: the data folder and number of (low, full)
  pairs, and where the pairs' metadata say so (``make_phantoms.py``'s
  ``manifest.json``, a manifest's ``dose_fraction`` column), the program that made
  them, scanner and tracer presets, dose fractions and dataset seeds.
* ``training``: ``{"step", "precision", "lr", "batch_size", "num_ranks",
  "ema_rate"}``: the step of these weights, the loop's precision, learning rate,
  crops per rank and step, ranks, and the EMA rate of these weights (for a
  checkpoint: of the EMA weights it gives by default, the first rate; ``null``
  for raw weights).
* ``warm_start_scale``: ``null`` or :func:`fit_record` of the scale of
  ``--start_timestep auto`` (``{"value", "fitted_by", "fitted_on", "date", "table"}``:
  the command, the data, the UTC date, and the per-case table: a CSV path or its rows).
* ``uncertainty_calibration``: ``null`` or :func:`fit_record` with key
  ``"factor"``: the factor by which the ensemble SD is scaled to match the error.
  ``benchmarks/calibrate_uncertainty.py`` fits it; ``scripts/test.py`` multiplies the SD map by it.
* ``validation``: ``null`` or ``{"step", "val_psnr", ...}``: the newest validation
  scores of the run's ``progress.csv`` (its ``val_*`` columns) for these weights.
* ``weights``: ``{"file", "sha256", "kind"}``: the weights file's name, the SHA-256
  of its bytes (a card whose hash differs belongs to other weights), and
  ``"ema"`` (an EMA state_dict), ``"model"`` (a plain state_dict of unknown
  averaging, e.g. the released ``model.pt``) or ``"checkpoint"`` (a training checkpoint).
* ``notes``: free text on provenance (``""`` when there is none).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path

from . import storage
from .checkpoint import CHECKPOINT_FORMAT, read_checkpoint, stored_flags
from .errors import UserError
from .train_state import EMA_PATTERN

CARD_FORMAT = "pet-ddpm3d-model-card-v1"
CARD_SUFFIX = ".card.json"
WEIGHTS_SUFFIXES = (".pt", ".pth")
WEIGHT_KINDS = ("ema", "model", "checkpoint")
#: Every field but ``format`` and ``weights``, which tie the card to its file.
UPDATABLE_SECTIONS = ("model_kind", "configuration", "model_voxel_size_mm", "intensity", "training_data", "training",
                      "warm_start_scale", "uncertainty_calibration", "validation", "notes")
#: How the network's input follows from SUV (see guided_diffusion/pet/intensity.py).
MODEL_VALUE = "clip(SUV, 0, suv_max) / data_scale"


def card_path(checkpoint: str | os.PathLike) -> str | Path:
    """``X.pt`` (or ``X.pth``) -> ``X.card.json`` beside it; any other name ``N`` -> ``N.card.json``.

    A ``Path`` for a local file, a string for a URL (see :mod:`guided_diffusion.storage`).
    """
    text = str(checkpoint)
    stem = next((text[: -len(s)] for s in WEIGHTS_SUFFIXES if text.endswith(s)), text)
    return stem + CARD_SUFFIX if storage.is_url(text) else Path(stem + CARD_SUFFIX)


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of the bytes of the file or URL ``path``."""
    digest = hashlib.sha256()
    with storage.open_binary_for_read(path) as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_card(checkpoint: str | os.PathLike) -> dict | None:
    """The card beside ``checkpoint``, or None when there is none.

    Raises:
        UserError: the card is not a JSON object of :data:`CARD_FORMAT` (naming the file).
    """
    path = card_path(checkpoint)
    if not storage.is_file(path):
        return None
    try:
        with storage.open_binary_for_read(path) as f:
            card = json.loads(f.read().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"model card {path} is corrupt ({str(err).splitlines()[0]}); delete it or write it again")
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT:
        raise UserError(f"model card {path} is not a {CARD_FORMAT} card; delete it or write it again")
    return card


def write_card(checkpoint: str | os.PathLike, card: dict) -> str | Path:
    """Write ``card`` beside ``checkpoint`` atomically (non-finite numbers become null); return its path."""
    text = json.dumps(_finite(card), indent=2, allow_nan=False) + "\n"
    return storage.write_binary(card_path(checkpoint), lambda f: f.write(text.encode("utf-8")))


def _finite(value):
    """``value`` with NaN and infinities replaced by None, in nested dicts and lists (JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def make_card(
    checkpoint: str | os.PathLike, *, kind: str, configuration: dict | None, model_voxel_size_mm: float | None,
    suv_max: float | None, training_data: dict | None = None, training: dict | None = None,
    validation: dict | None = None, warm_start_scale: dict | None = None,
    uncertainty_calibration: dict | None = None, notes: str = "",
) -> dict:
    """A card for the weights file ``checkpoint`` (read once for its SHA-256); the fields are the module's."""
    if kind not in WEIGHT_KINDS:
        raise ValueError(f"kind must be one of {WEIGHT_KINDS}, got {kind!r}")
    return {
        "format": CARD_FORMAT,
        "model_kind": (configuration or {}).get("model_kind", "diffusion"),
        "configuration": configuration,
        "model_voxel_size_mm": model_voxel_size_mm,
        "intensity": {"suv_max": suv_max, "data_scale": (configuration or {}).get("data_scale", suv_max),
                      "model_value": MODEL_VALUE},
        "training_data": training_data,
        "training": training,
        "warm_start_scale": warm_start_scale,
        "uncertainty_calibration": uncertainty_calibration,
        "validation": validation,
        "weights": {"file": _file_name(checkpoint), "sha256": file_sha256(checkpoint), "kind": kind},
        "notes": notes,
    }


def _file_name(path: str | os.PathLike) -> str:
    return str(path).rpartition("/")[2] if storage.is_url(path) else Path(path).name


def card_from_weights(checkpoint: str | os.PathLike) -> dict:
    """A card from what the weights file alone says: the flags a training checkpoint stores (see
    :func:`~guided_diffusion.checkpoint.stored_flags`), its kind and hash; everything else null."""
    if read_checkpoint(checkpoint).get("format") == CHECKPOINT_FORMAT:
        kind = "checkpoint"
    else:
        kind = "ema" if EMA_PATTERN.fullmatch(_file_name(checkpoint)) else "model"
    flags = stored_flags(checkpoint) or {}
    return make_card(checkpoint, kind=kind, configuration=flags or None,
                     model_voxel_size_mm=flags.get("model_voxel_size"), suv_max=flags.get("suv_max"))


def read_own_card(checkpoint: str | os.PathLike) -> dict | None:
    """The card beside ``checkpoint`` (None without one), checked to belong to its bytes.

    Raises:
        UserError: ``checkpoint`` is missing, its card is corrupt, or the card's SHA-256 is another file's.
    """
    if not storage.is_file(checkpoint):
        raise UserError(f"{checkpoint}: the weights file does not exist")
    card = read_card(checkpoint)
    if card is None:
        return None
    found = file_sha256(checkpoint)
    recorded = (card.get("weights") or {}).get("sha256")
    if recorded != found:
        raise UserError(f"model card {card_path(checkpoint)} belongs to other weights (sha256 {recorded}), not to "
                        f"{checkpoint} (sha256 {found}); move the card away or delete it to start a new one")
    return card


def update_card(checkpoint: str | os.PathLike, **sections) -> dict:
    """Replace ``sections`` (fields of the module's list) in the card of ``checkpoint``; return the new card.

    Without a card, one is started from the weights file (:func:`card_from_weights`).

    Raises:
        UserError: ``checkpoint`` is missing, or its card belongs to other weights (SHA-256).
    """
    unknown = sorted(set(sections) - set(UPDATABLE_SECTIONS))
    if unknown:
        raise ValueError(f"not card sections that may be updated: {unknown}")
    card = read_own_card(checkpoint) or card_from_weights(checkpoint)
    card.update(sections)
    write_card(checkpoint, card)
    return card


def fit_record(value: float, *, fitted_by: str, fitted_on: dict | str, table: str | list[dict],
               key: str = "value", date: str | None = None) -> dict:
    """A fitted setting: ``{key: value, "fitted_by", "fitted_on", "date", "table"}``.

    Args:
        fitted_by: the command that fitted it (see :func:`current_command`).
        fitted_on: the data it was fitted on (a description or a folder).
        table: the per-case results: a CSV path, or the rows themselves.
        key: ``"value"`` (warm-start scale) or ``"factor"`` (uncertainty calibration).
        date: ISO date; default now (UTC, to the second).
    """
    return {key: value, "fitted_by": fitted_by, "fitted_on": fitted_on,
            "date": date or datetime.now(UTC).isoformat(timespec="seconds"), "table": table}


def current_command() -> str:
    """This process's command line, as a shell would take it: ``python <script> <args>``."""
    return shlex.join(["python", *sys.argv])


def latest_validation(progress_csv: str | os.PathLike) -> dict | None:
    """``{"step", "val_...": score}`` of the newest row of a ``progress.csv`` with validation scores, or None."""
    if not storage.is_file(progress_csv):
        return None
    with storage.open_binary_for_read(progress_csv) as f:
        rows = list(csv.DictReader(io.TextIOWrapper(f, encoding="utf-8", newline="")))
    for row in reversed(rows):
        scores = {k: float(v) for k, v in row.items() if k and k.startswith("val_") and v}
        if scores:
            return {"step": int(row["step"]), **scores}
    return None
