"""The organ labels of the phantom: one uint8 value per tissue, 0 for the air outside the body."""

from __future__ import annotations

#: Organ label values and their names (0 is air outside the body).
LABEL_NAMES: dict[int, str] = {
    0: "air",
    1: "fat",
    2: "muscle",
    3: "bone",
    4: "bone_marrow",
    5: "brain",
    6: "lungs",
    7: "myocardium",
    8: "blood_pool",
    9: "liver",
    10: "spleen",
    11: "kidneys",
    12: "bladder",
    13: "salivary_glands",  # parotid and submandibular
    14: "lacrimal_glands",
    15: "pituitary",
    16: "adrenals",
    17: "lymph_nodes",  # small nodes along the para-aortic and iliac chains
}
LABELS: dict[str, int] = {name: value for value, name in LABEL_NAMES.items()}
