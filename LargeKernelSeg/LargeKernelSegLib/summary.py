"""Short texts for the panel: a model card's summary and a fine-tuning job's progress."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


MAX_ITEMS = 4
MAX_VALUE = 60
MAX_NOTES = 400


def _scalars(d: dict, prefer: tuple[str, ...], numbers_only: bool = False) -> list[tuple[str, Any]]:
    """Up to MAX_ITEMS short scalar entries of ``d``, the ``prefer`` keys first (nested dicts/lists skipped)."""
    def ok(v: Any) -> bool:
        if isinstance(v, bool):
            return not numbers_only
        if isinstance(v, (int, float)):
            return True
        return not numbers_only and isinstance(v, str) and 0 < len(v) <= MAX_VALUE

    keys = [k for k in prefer if k in d] + [k for k in d if k not in prefer]
    return [(k, d[k]) for k in keys if ok(d[k])][:MAX_ITEMS]


def card_summary(card: Any) -> str:
    """A few plain lines: architecture, labels, spacing, training data and metrics of a ``ModelCard``."""
    table = card.labels
    names = ", ".join(label.name for label in sorted(table.labels, key=lambda lab: lab.value))
    pre = card.preprocessing
    spacing = "native" if pre.spacing is None else " x ".join(f"{s:g}" for s in pre.spacing) + " mm"
    intensity = pre.intensity.get("mode", "none") if isinstance(pre.intensity, dict) else str(pre.intensity)
    lines = [
        f"Architecture: {card.architecture}",
        f"Organs ({len(table.labels)}): {names}",
        f"Resampled to: {spacing}, orientation {pre.orientation}, intensity {intensity}",
    ]
    prov = card.provenance
    data = _scalars(prov.training_data or {}, prefer=("dataset", "num_cases", "cases", "steps"))
    if data:
        lines.append("Trained on: " + ", ".join(f"{k} {v}" for k, v in data))
    metrics = _scalars(prov.metrics or {}, prefer=("val_dice_mean", "heldout_dice_mean", "dice"), numbers_only=True)
    if metrics:
        lines.append("Metrics: " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics))
    if prov.notes:
        notes = " ".join(str(prov.notes).split())
        lines.append(notes if len(notes) <= MAX_NOTES else notes[: MAX_NOTES - 3].rstrip() + "...")
    return "\n".join(lines)


@dataclass
class JobView:
    """What the fine-tuning section shows for one job."""

    state: str
    fraction: float | None
    text: str
    finished: bool
    best: str | None


def read_progress(job_dir: Path) -> list[dict]:
    """Rows of ``progress.jsonl`` (a half-written last line is skipped)."""
    rows = []
    try:
        lines = (Path(job_dir) / "progress.jsonl").read_text(encoding="utf-8").splitlines()
    except OSError:
        return rows
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def job_view(status: dict, rows: list[dict], total_steps: int | None = None) -> JobView:
    """Progress fraction and a one-line text from ``jobs.job_status`` and the progress rows."""
    state = str(status.get("state", "unknown"))
    finished = state in ("done", "failed", "cancelled")
    best = status.get("best") or next(
        (r.get("best") for r in reversed(rows) if r.get("event") == "done" and r.get("best")), None)
    steps = [r for r in rows if "step" in r and r.get("event") != "done"]
    last = steps[-1] if steps else {}
    dice = next((r["val_dice"] for r in reversed(steps) if r.get("val_dice") is not None), None)
    fraction = None
    if state == "done":
        fraction = 1.0
    elif total_steps and last.get("step") is not None:
        fraction = max(0.0, min(1.0, float(last["step"]) / float(total_steps)))
    parts = [state.capitalize()]
    if last.get("step") is not None:
        parts.append(f"step {last['step']}" + (f"/{total_steps}" if total_steps else ""))
    if last.get("loss") is not None:
        parts.append(f"loss {float(last['loss']):.4f}")
    if dice is not None:
        parts.append(f"validation Dice {float(dice):.3f}")
    if last.get("eta_s") and not finished:
        parts.append(f"about {max(1, round(float(last['eta_s']) / 60))} min left")
    if state == "failed" and status.get("error"):
        parts.append(str(status["error"]).strip().splitlines()[-1][:200])
    return JobView(state, fraction, ", ".join(parts), finished, best)


def card_text(path: str, read_card: Any, user_message: Any) -> tuple[str, bool]:
    """(text for the model box, ok) for the model path being typed or chosen.

    A path that names no file yet (typing is under way) is not an error: it gets a hint and no log
    entry; a file that is not a usable model gets the plain-language reason.
    """
    if path and not Path(path).is_file():
        return "No model file at this path yet: type or choose a .safetensors file, or clear it for the bundled default.", False
    try:
        return card_summary(read_card(path)), True
    except Exception as exc:  # noqa: BLE001 - a bad file is the user's to fix: say why
        log.info("model card of %s not readable: %s", path or "the default model", exc)
        return user_message(exc), False
