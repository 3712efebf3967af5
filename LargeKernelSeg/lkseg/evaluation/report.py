"""Evaluation results out: the per-organ summary, a CSV row per case and organ, JSON, and a box plot."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np

from lkseg.evaluation.organ_scores import BOTH, FALSE_POSITIVE, MISSED, OrganScore, dice_mean
from lkseg.utils.atomic import atomic_path, atomic_write_json, atomic_write_text

METRICS = ("dice", "hd95_mm", "assd_mm", "nsd", "volume_diff_ml", "volume_diff_pct")
CSV_FIELDS = ("case", "value", "name", "status", *METRICS, "volume_ml", "reference_ml")


def _stats(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"mean": None, "median": None}
    return {"mean": float(np.mean(values)), "median": float(np.median(values))}


def summary(cases: dict[str, list[OrganScore]]) -> dict[str, Any]:
    """Per organ: mean/median of each metric over the cases whose reference has it, and counts."""
    organs: dict[int, dict[str, Any]] = {}
    for scores in cases.values():
        for s in scores:
            entry = organs.setdefault(s.value, {"name": s.name, "cases": 0, "missed": 0, "false_positive": 0,
                                                **{m: [] for m in METRICS}})
            if s.status in (BOTH, MISSED):
                entry["cases"] += 1
                entry["missed"] += s.status == MISSED
                for m in METRICS:
                    if getattr(s, m) is not None:
                        entry[m].append(getattr(s, m))
            elif s.status == FALSE_POSITIVE:
                entry["false_positive"] += 1
    out = {str(v): {**{k: e[k] for k in ("name", "cases", "missed", "false_positive")},
                    **{m: _stats(e[m]) for m in METRICS}} for v, e in sorted(organs.items())}
    per_case = [d for d in (dice_mean(s) for s in cases.values()) if d is not None]
    return {"organs": out, "mean_dice": float(np.mean(per_case)) if per_case else None}


def table_text(result: dict[str, Any], tolerance_mm: float) -> str:
    """The per-organ table a terminal shows (means over cases; n/a where undefined)."""

    def f(x: float | None, fmt: str) -> str:
        return format(x, fmt) if x is not None else "n/a"

    lines = [f"{'organ':<24} {'cases':>5} {'Dice':>7} {'HD95 mm':>8} {'ASSD mm':>8} {f'NSD@{tolerance_mm:g}':>8} "
             f"{'dVol mL':>8} {'dVol %':>7}  notes"]
    for o in result["organs"].values():
        notes = []
        if o["missed"]:
            notes.append(f"missed in {o['missed']} (Dice 0)")
        if o["false_positive"]:
            notes.append(f"false positive in {o['false_positive']} (not in the Dice mean)")
        if not o["cases"] and not o["false_positive"]:
            continue  # absent from every case
        lines.append(f"{o['name'][:24]:<24} {o['cases']:>5} {f(o['dice']['mean'], '.4f'):>7} "
                     f"{f(o['hd95_mm']['mean'], '.2f'):>8} {f(o['assd_mm']['mean'], '.2f'):>8} "
                     f"{f(o['nsd']['mean'], '.4f'):>8} {f(o['volume_diff_ml']['mean'], '.1f'):>8} "
                     f"{f(o['volume_diff_pct']['mean'], '.1f'):>7}  {'; '.join(notes)}")
    lines.append(f"mean Dice (per case over the organs in its reference, then over cases): "
                 f"{f(result['mean_dice'], '.4f')}")
    return "\n".join(lines)


def write_csv(cases: dict[str, list[OrganScore]], path: str | Path) -> Path:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS)
    writer.writeheader()
    for case, scores in cases.items():
        for s in scores:
            row = {k: v for k, v in s.as_dict().items() if k in CSV_FIELDS}
            writer.writerow({"case": case, **{k: ("" if v is None else v) for k, v in row.items()}})
    atomic_write_text(path, buf.getvalue())
    return Path(path)


def write_json(cases: dict[str, list[OrganScore]], result: dict[str, Any], tolerance_mm: float,
               path: str | Path) -> Path:
    atomic_write_json(path, {"nsd_tolerance_mm": tolerance_mm, **result,
                             "cases": {c: [s.as_dict() for s in scores] for c, scores in cases.items()}})
    return Path(path)


def write_boxplot(cases: dict[str, list[OrganScore]], path: str | Path) -> Path:
    """Dice and HD95 per organ over the cases whose reference has the organ, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    organs: dict[str, dict[str, list[float]]] = {}
    for scores in cases.values():
        for s in scores:
            if s.status in (BOTH, MISSED):
                d = organs.setdefault(s.name, {"dice": [], "hd95_mm": []})
                d["dice"].append(s.dice)
                if s.hd95_mm is not None:
                    d["hd95_mm"].append(s.hd95_mm)
    names = list(organs)
    fig, axes = plt.subplots(1, 2, figsize=(max(6, 1.2 * len(names) + 3), 4.5))
    for ax, key, title in ((axes[0], "dice", "Dice"), (axes[1], "hd95_mm", "HD95 (mm)")):
        data = [organs[n][key] or [np.nan] for n in names]
        ax.boxplot(data, showmeans=True)
        ax.set_xticks(range(1, len(names) + 1), names, rotation=30, ha="right")
        ax.set_title(f"{title}, {len(cases)} case(s)")
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylim(0, 1.02)
    fig.tight_layout()
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return Path(path)
