"""Dose fractions: one parser for every flag that takes them, and their file-name labels."""

import subprocess
import sys
from pathlib import Path

import pytest

from guided_diffusion.errors import UserError
from guided_diffusion.pet.sim.doses import dose_label, parse_dose_fraction, parse_dose_fractions

REPO = Path(__file__).resolve().parents[1]


def test_fractions_decimals_and_lists():
    assert parse_dose_fractions("1/100", "--dose") == [0.01]
    assert parse_dose_fractions("0.01", "--dose") == [0.01]
    # Sorted largest first, duplicates (1/2 = 0.5) merged, spaces ignored.
    assert parse_dose_fractions("1/20, 1, 0.5,1/2", "--dose_levels") == [1.0, 0.5, 0.05]
    assert parse_dose_fraction("1/20", "--dose") == 0.05


@pytest.mark.parametrize(
    "text, message",
    [
        ("1/0", "--dose_levels: cannot read '1/0'; write fractions like 1/20 or 0.05"),
        ("a", "--dose_levels: cannot read 'a'"),
        ("", "--dose_levels: cannot read ''"),
        ("1/2,", "--dose_levels: cannot read ''"),
        ("0", r"--dose_levels: 0 is not in \(0, 1\]"),
        ("3/2", r"--dose_levels: 3/2 is not in \(0, 1\]"),
        ("-0.1", r"--dose_levels: -0.1 is not in \(0, 1\]"),
    ],
)
def test_bad_levels_name_the_flag(text, message):
    with pytest.raises(UserError, match=message):
        parse_dose_fractions(text, "--dose_levels")


def test_one_fraction_where_one_is_asked():
    with pytest.raises(UserError, match="--dose: give one dose fraction"):
        parse_dose_fraction("1/2,1/4", "--dose")


def test_dose_labels():
    assert [dose_label(d) for d in (1.0, 0.5, 0.05, 1 / 100, 0.3)] == ["1", "1-2", "1-20", "1-100", "0.3"]


def test_quality_benchmark_reads_doses_with_the_same_parser():
    # The flag is read before any model is built, so a bad dose fails fast with the parser's message.
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "quality.py"), "--dose", "3/2"],
                            capture_output=True, text=True, cwd=REPO, check=False)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == ["error: --dose: 3/2 is not in (0, 1]"]
