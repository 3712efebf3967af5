"""Fine-tuning from the panel: the job folder and the ``python -m lkseg.training`` arguments.

The job itself is started, watched and cancelled by ``lkseg.jobs`` (a detached process that
outlives the panel); this module only decides where it goes and what it is asked to do.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any


def new_job_dir(dataset: str | Path, now: datetime | None = None) -> Path:
    """A fresh folder name ``<dataset>/jobs/finetune-YYYYmmdd-HHMMSS[-N]`` (not created)."""
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    base = Path(dataset) / "jobs" / f"finetune-{stamp}"
    path, n = base, 2
    while path.exists():
        path = base.with_name(f"{base.name}-{n}")
        n += 1
    return path


def fine_tune_argv(dataset: str | Path, checkpoint: str | Path, out: str | Path, steps: int = 0,
                   minutes: float = 0, device: str = "auto") -> list[str]:
    """Training arguments: fine-tune ``checkpoint`` on ``dataset`` into ``out``.

    ``steps`` wins when both limits are given (the trainer takes one); neither means its default.
    """
    argv = ["--dataset", str(dataset), "--out", str(out), "--checkpoint", str(checkpoint), "--device", device]
    if steps and steps > 0:
        argv += ["--steps", str(int(steps))]
    elif minutes and minutes > 0:
        argv += ["--minutes", f"{float(minutes):g}"]
    return argv


def _steps_in(value: Any) -> int | None:
    if isinstance(value, dict):
        if isinstance(value.get("steps"), int):
            return value["steps"]
        for v in value.values():
            found = _steps_in(v)
            if found is not None:
                return found
    elif isinstance(value, list):
        items = [str(v) for v in value]
        if "--steps" in items and items.index("--steps") + 1 < len(items):
            try:
                return int(items[items.index("--steps") + 1])
            except ValueError:
                return None
    return None


def job_total_steps(job_dir: str | Path) -> int | None:
    """The step budget recorded in ``job.json`` (a ``steps`` key or ``--steps N`` in an argument list)."""
    try:
        data = json.loads((Path(job_dir) / "job.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return _steps_in(data)
