"""benchmarks/fixed_choice.py: ratios of fixed choices to the per-problem best peer, with and without each run's worst
start (docs/samplers.md, "Held-out set 3")."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
import fixed_choice  # noqa: E402


def run(errors: list[float]) -> tuple[float, list[float]]:
    return sum(errors) / len(errors), errors


def problem(ours: dict[str, list[float]], peers: dict[str, list[float]]) -> dict:
    """One problem at NFE 10 with the given per-start errors (strings as NFE keys, as in the --json file)."""
    return {"ours": {k: {"10": run(v)[0]} for k, v in ours.items()},
            "ours_points": {k: {"10": v} for k, v in ours.items()},
            "peers": {k: {"10": run(v)[0]} for k, v in peers.items()},
            "peers_points": {k: {"10": v} for k, v in peers.items()}}


def test_ratios_oracle_and_trimmed_flip():
    # problem a: ours is 2x better on every start but one, which flips (error 10): the mean loses, the trimmed wins
    a = problem({"ours unipc": [0.1, 0.1, 0.1, 10.0], "ours lms": [0.3] * 4}, {"p1": [0.2] * 4, "p2": [0.4] * 4})
    b = problem({"ours unipc": [0.1] * 4, "ours lms": [0.05] * 4}, {"p1": [0.4] * 4, "p2": [0.2] * 4})
    full = fixed_choice.candidate_ratios({"1 edm": a, "2 edm": b}, "10", trimmed=False)
    assert full["ours unipc"] == pytest.approx([(0.3 + 10) / 4 / 0.2, 0.5])
    assert full["oracle ours"] == pytest.approx([1.5, 0.25])  # per problem the better of ours: lms on a, lms on b
    assert full["p1"] == pytest.approx([1.0, 2.0]) and full["p2"] == pytest.approx([2.0, 1.0])
    trimmed = fixed_choice.candidate_ratios({"1 edm": a, "2 edm": b}, "10", trimmed=True)
    assert trimmed["ours unipc"] == pytest.approx([0.5, 0.5])


def test_table_names_the_best_fixed_choices():
    a = problem({"ours unipc": [0.1, 0.1, 0.1, 10.0], "ours lms": [0.3] * 4}, {"p1": [0.2] * 4, "p2": [0.4] * 4})
    b = problem({"ours unipc": [0.1] * 4, "ours lms": [0.05] * 4}, {"p1": [0.4] * 4, "p2": [0.2] * 4})
    text = fixed_choice.table({"1 edm": a, "2 edm": b}, ("edm",), (10,), "unipc")
    row = text.splitlines()[-1]
    # default worst 12.9 (median 6.7); oracle 1.5; best fixed of ours lms (1.5); best peer p1 or p2 (worst 2)
    assert row.startswith("| edm | 10 | 2 | 12.88 (6.69) | 1.50 (0.87) | 1.50 (0.87) lms | 2.00 (1.50) p1 |")
    assert row.endswith("| 0.50 (0.50) | 0.50 (0.38) | 0.50 (0.50) unipc | 2.00 (1.50) p1 |")


def test_losses_counts_flips_and_trimmed_losses():
    a = problem({"ours unipc": [0.1, 0.1, 0.1, 10.0]}, {"p1": [0.2] * 4})  # above 1, one start, wins trimmed
    b = problem({"ours unipc": [0.5] * 4}, {"p1": [0.2] * 4})  # above 1 on every start
    c = problem({"ours unipc": [0.1] * 4}, {"p1": [0.2, 0.2, 0.2, 9.0]})  # below 1; the peer's run is a flip
    row = fixed_choice.losses({"1 flow": a, "2 flow": b, "3 flow": c}, ("flow",), (10,), "unipc").splitlines()[-1]
    assert row == "| flow | 10 | 3 | 2 | 1 | 1 | 1 / 1 |"
