"""Show the model card of a checkpoint: what it was trained on and validated for.

    python scripts/model_card.py models/demo_all_doses/model_ema.pt

The card of ``X.pt`` is ``X.card.json`` beside it (see README.md, "Model cards").
For each path, prints whether there is a card and whether it belongs to these
weights (its SHA-256), then the card. A card that belongs to other weights, or
a corrupt one, ends with one line on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import json

from guided_diffusion import dist_util
from guided_diffusion.flags import FlagParser
from guided_diffusion.model_card import card_path, read_own_card


def create_argparser() -> argparse.ArgumentParser:
    parser = FlagParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+", metavar="CHECKPOINT", help="weights files (.pt) or URLs")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = create_argparser().parse_args(argv)
    for checkpoint in args.checkpoints:
        card = read_own_card(checkpoint)
        if card is None:
            print(f"{checkpoint}: no model card ({card_path(checkpoint)})")
            continue
        print(f"{checkpoint}: model card {card_path(checkpoint)}, written for these weights (sha256 matches)")
        print(json.dumps(card, indent=2))


if __name__ == "__main__":
    dist_util.run_main(main)
