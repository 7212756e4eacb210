"""The phantom's small structures: salivary and lacrimal glands, pituitary, adrenals and lymph nodes.

They come from a random stream of their own (see ``phantom.py``), so that
adding them left the first version's anatomy and lesions unchanged, and are
painted after the lesions, over soft tissue outside them. Positions are in
world mm on the ``(X, Y, Z)`` grid of the phantom.
"""

from __future__ import annotations

import numpy as np

from .anatomy import aorta_centre
from .body import Body
from .labels import LABELS
from .voxel_shapes import Ellipsoid, Grid, ellipsoid


def draw_small_organs(rng: np.random.Generator, body: Body) -> dict[str, list[Ellipsoid]]:
    """Glands, adrenals and lymph nodes (centre, semi-axes in world mm), jittered per subject.

    Model positions are (x, y, depth below vertex) as in :func:`~.anatomy.draw_organs`; the
    head and neck keep their size in mm as the head does, the trunk scales with the body.
    """

    def place(x: float, y: float, depth: float, axes: tuple[float, float, float], trunk: bool) -> Ellipsoid:
        jitter = rng.normal(0.0, 2.0, size=3)
        scale = rng.uniform(0.85, 1.15)
        sx, sy = (body.width, body.depth) if trunk else (1.0, 1.0)
        centre = (x * sx + jitter[0], y * sy + jitter[1], float(body.z_of(depth)) + jitter[2])
        return centre, (axes[0] * scale, axes[1] * scale, axes[2] * scale * body.height)

    sides = (1, -1)
    organs = {
        # Parotids in front of the ears, submandibular glands under the jaw.
        "salivary_glands": [place(side * 40, 0, 176, (11, 18, 22), False) for side in sides]
        + [place(side * 28, 30, 200, (10, 13, 9), False) for side in sides],
        # Upper outer corner of each orbit.
        "lacrimal_glands": [place(side * 30, 78, 108, (9, 5, 5), False) for side in sides],
        # Below the brain, in the sella.
        "pituitary": [place(0, 12, 163, (6, 5, 4), False)],
        # Above and medial to the kidneys, the left one higher.
        "adrenals": [place(side * 38, -60, 672 if side > 0 else 657, (6, 12, 15), True) for side in sides],
    }
    nodes = []
    for _ in range(int(rng.integers(4, 9))):
        radius = float(rng.uniform(2.5, 5.0))  # 5-10 mm across
        if rng.random() < 0.5:  # para-aortic: left of the aorta or between it and the vena cava
            depth = float(rng.uniform(700, 810))
            z = np.array([body.z_of(depth)])
            x, y = aorta_centre(body, z)
            x = x + float(rng.choice((-18.0, 24.0)))
            y = float(y[0]) + float(rng.uniform(-8, 8))
        else:  # along the common and external iliac vessels, towards the groin
            t, side = float(rng.uniform()), float(rng.choice(sides))
            depth = 830 + 70 * t
            x, y = side * (30 + 40 * t) * body.width, (-25 + 25 * t) * body.depth
        nodes.append(((x, y, float(body.z_of(depth))), (radius, radius, radius)))
    organs["lymph_nodes"] = nodes
    return organs


def paint_small_organs(labels: np.ndarray, grid: Grid, organs: dict[str, list[Ellipsoid]],
                       lesion_mask: np.ndarray) -> None:
    """Paint small structures over soft tissue (muscle) outside lesions, in place.

    ``labels`` (uint8) and ``lesion_mask`` (0 outside lesions) are ``(X, Y, Z)``
    on ``grid``; ``organs`` is :func:`draw_small_organs`'s result.
    A structure smaller than a voxel still takes the voxel at its centre, unless
    that voxel is air, fat, an organ or a lesion (soft tissue, or the bone or
    brain a coarse voxel at the skull base may hold, are taken), so that each
    exists at coarse voxel sizes.
    """
    muscle = LABELS["muscle"]
    replaceable = {muscle, LABELS["bone"], LABELS["brain"]}
    spacing = float(grid.x[1] - grid.x[0])
    for name, shapes in organs.items():
        value = LABELS[name]
        for centre, axes in shapes:
            region = ellipsoid(grid, centre, axes)
            if region is not None:
                box = labels[region.box]
                box[region.mask & (box == muscle) & (lesion_mask[region.box] == 0)] = value
            index = tuple(int(np.floor((c - axis[0]) / spacing + 0.5)) for c, axis in zip(centre, grid))
            inside = all(0 <= i < len(axis) for i, axis in zip(index, grid))
            if inside and labels[index] in replaceable and lesion_mask[index] == 0:
                labels[index] = value
