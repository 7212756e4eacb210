"""What a folder of training pairs holds, for the model card: count, and what the pairs' metadata say.

Metadata read (files under the data folder, names starting with ``.`` skipped):

* ``manifest.json`` written by ``scripts/make_phantoms.py``: the generator, its
  ``--scanner`` (``"simulator default"`` without one), ``--tracer``, ``--seed``,
  ``--num_subjects`` and the dose levels below 1 (the full dose is no pair);
* the ``dose_fraction`` column of ``pairs.csv`` / ``pairs.json`` manifests.

Unreadable or foreign metadata are passed over: the description is a record, not a check.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

from .pairs import MANIFEST_NAMES, PairEntry

PHANTOM_MANIFEST = "manifest.json"
PHANTOM_GENERATOR = "scripts/make_phantoms.py"


def describe_pairs(data_dir: str | Path, entries: Sequence[PairEntry]) -> dict:
    """``{"folder", "num_pairs", "generator", "scanner", "tracer", "doses", "seeds", "num_subjects"}``.

    ``folder`` is ``data_dir`` as given, ``num_pairs`` ``len(entries)``. The others
    are null where no metadata say so; ``scanner``, ``tracer``, ``doses`` (dose
    fractions, largest first) and ``seeds`` (dataset seeds) are sorted lists of
    the distinct values found, ``num_subjects`` the sum over the phantom manifests.
    """
    root = Path(data_dir)
    visible = [p for p in sorted(root.rglob("*"))
               if not any(part.startswith(".") for part in p.relative_to(root).parts) and p.is_file()]
    phantoms = [m for m in map(_read_json, (p for p in visible if p.name == PHANTOM_MANIFEST))
                if isinstance(m, dict) and m.get("generator") == PHANTOM_GENERATOR]
    arguments = [m.get("arguments") or {} for m in phantoms]
    doses = {float(d) for m in phantoms for d in m.get("dose_levels", []) if float(d) < 1}
    doses |= {float(d) for p in visible if p.name in MANIFEST_NAMES for d in _dose_column(p)}
    return {
        "folder": str(data_dir),
        "num_pairs": len(entries),
        "generator": PHANTOM_GENERATOR if phantoms else None,
        "scanner": sorted({a.get("scanner") or "simulator default" for a in arguments}) or None,
        "tracer": sorted({a["tracer"] for a in arguments if a.get("tracer")}) or None,
        "doses": sorted(doses, reverse=True) or None,
        "seeds": sorted({int(a["seed"]) for a in arguments if a.get("seed") is not None}) or None,
        "num_subjects": sum(int(a.get("num_subjects", 0)) for a in arguments) if phantoms else None,
    }


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


def _dose_column(manifest: Path) -> list[str]:
    """The non-empty ``dose_fraction`` values of a ``pairs.csv`` / ``pairs.json`` manifest."""
    if manifest.suffix == ".json":
        rows = _read_json(manifest)
    else:
        try:
            rows = list(csv.DictReader(manifest.read_text(encoding="utf-8").splitlines()))
        except (OSError, UnicodeDecodeError, csv.Error):
            rows = None
    if not isinstance(rows, list):
        return []
    values = [str(row.get("dose_fraction", "")).strip() for row in rows if isinstance(row, dict)]
    return [v for v in values if _is_number(v)]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
