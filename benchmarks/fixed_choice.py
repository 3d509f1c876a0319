"""Could any fixed sampler meet "never worse than the best peer"? (docs/samplers.md, "Held-out set 3").

From the errors `samplers_heldout.py --json` writes, every candidate, each of our rows (methods and variants on their
default grids) and each peer method-and-grid taken as if it were our default, is scored per problem by its error over
the best peer's on that problem (family, NFE); a candidate meets the goal on a set if its worst ratio is at most 1.
`oracle ours` is the per-problem best of our rows (chosen after the fact, so no fixed rule can beat it). With
per-start errors stored (sets run since "Held-out set 3"), the same is repeated with every run's mean taken without
its worst start (`trimmed`): one start of 32 that the sampler sends to another mixture component (a basin flip)
can hold most of a run's error, and which sampler flips on which start is close to chance.
"""

from __future__ import annotations

import statistics
from typing import Any

OURS_PREFIX = "ours "


def run_error(errors: dict[str, Any], points: dict[str, Any], name: str, nfe: str, trimmed: bool) -> float | None:
    """Mean error of one run (over its starts), without its worst start if trimmed; None where it did not run."""
    if nfe not in errors.get(name, {}):
        return None
    if not trimmed:
        return errors[name][nfe]
    e = sorted(points[name][nfe])
    return sum(e[:-1]) / (len(e) - 1)


def candidate_ratios(problems: dict[str, Any], nfe: str, trimmed: bool) -> dict[str, list[float]]:
    """candidate -> its ratio to the per-problem best peer on every problem where it ran (`oracle ours` included)."""
    out: dict[str, list[float]] = {}
    for p in problems.values():
        ours_pts, peer_pts = p.get("ours_points", {}), p.get("peers_points", {})
        peers = {k: run_error(p["peers"], peer_pts, k, nfe, trimmed) for k in p["peers"]}
        peers = {k: v for k, v in peers.items() if v is not None}
        ours = {k: run_error(p["ours"], ours_pts, k, nfe, trimmed) for k in p["ours"]}  # keys "ours <row>"
        ours = {k: v for k, v in ours.items() if v is not None}
        if not peers or not ours:
            continue
        best = min(peers.values())
        for k, v in {**ours, **peers}.items():
            out.setdefault(k, []).append(v / best)
        out.setdefault("oracle ours", []).append(min(v for k, v in ours.items() if "calibrated" not in k) / best)
    return out


def has_points(problems: dict[str, Any]) -> bool:
    return all(p.get("ours_points") and p.get("peers_points") for p in problems.values())


def table(errors: dict[str, Any], families: tuple[str, ...], nfes: tuple[int, ...], default: str) -> str:
    """Markdown: per family and NFE, the worst ratio of the default, of the oracle, and of the best fixed candidates
    of ours and of the peers (by worst ratio, in hindsight), as "worst (median)"; trimmed columns where possible."""
    views = [False, True] if has_points(errors) else [False]
    head = ["family", "NFE", "problems", "default", "oracle ours", "best fixed of ours", "best fixed peer"]
    lines = ["| " + " | ".join(head + [f"{h}, trimmed" for h in head[3:]] * (len(views) - 1)) + " |",
             "|---|---:|---:|" + "---|" * (len(head) - 3) * len(views)]
    for family in families:
        fam = {k: v for k, v in errors.items() if k.split(" ")[1] == family}
        for nfe in nfes:
            cells: list[str] = []
            for trimmed in views:
                r = candidate_ratios(fam, str(nfe), trimmed)
                n = len(r.get("oracle ours", []))
                if not n:
                    break
                full = {k: v for k, v in r.items() if len(v) == n}  # candidates that ran on every problem
                fmt = lambda k: f"{max(full[k]):.2f} ({statistics.median(full[k]):.2f})"  # noqa: E731
                best_ours = min((k for k in full if k.startswith(OURS_PREFIX)), key=lambda k: max(full[k]))
                best_peer = min((k for k in full if not k.startswith(OURS_PREFIX) and k != "oracle ours"),
                                key=lambda k: max(full[k]))
                cells += [fmt(f"ours {default}"), fmt("oracle ours"), f"{fmt(best_ours)} {best_ours[5:]}",
                          f"{fmt(best_peer)} {best_peer}"]
            if cells:
                lines.append(f"| {family} | {nfe} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def one_start(points: list[float]) -> bool:
    """One start holds more than half of the run's error (a basin flip, typically)."""
    return max(points) > 0.5 * sum(points)


def losses(errors: dict[str, Any], families: tuple[str, ...], nfes: tuple[int, ...], default: str) -> str:
    """Markdown: per family and NFE, the problems where the default is above the best peer, how many of those the
    default's worst start dominates (`one_start`), how many stay above 1 with every run's worst start left out, and
    how many of all problems have a dominating start in the default's run and in the best peer's."""
    lines = ["| family | NFE | problems | default > best peer | of those, one start > half the error | "
             "still > 1, trimmed | one start > half: default / best peer |", "|---|---:|---:|---:|---:|---:|---:|"]
    row = f"ours {default}"
    for family in families:
        fam = {k: v for k, v in errors.items() if k.split(" ")[1] == family}
        for nfe in (str(n) for n in nfes):
            above = dominated = still = flips_default = flips_peer = n = 0
            for p in fam.values():
                peers = {k: v[nfe] for k, v in p["peers"].items() if nfe in v}
                if nfe not in p["ours"].get(row, {}) or not peers:
                    continue
                n += 1
                best = min(peers, key=peers.get)
                flips_default += one_start(p["ours_points"][row][nfe])
                flips_peer += one_start(p["peers_points"][best][nfe])
                if p["ours"][row][nfe] > peers[best]:
                    above += 1
                    dominated += one_start(p["ours_points"][row][nfe])
                    trim = {k: run_error(p["peers"], p["peers_points"], k, nfe, True) for k in peers}
                    still += run_error(p["ours"], p["ours_points"], row, nfe, True) > min(trim.values())
            if n:
                lines.append(f"| {family} | {nfe} | {n} | {above} | {dominated} | {still} | "
                             f"{flips_default} / {flips_peer} |")
    return "\n".join(lines)
