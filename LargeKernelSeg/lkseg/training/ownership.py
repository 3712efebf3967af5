"""Whose run a job folder holds, so that training never writes over what it did not make.

The first run into ``--out`` records its source in ``run.json`` (written atomically): the parent
checkpoint's SHA-256 (or the architecture trained from scratch) and the dataset folder. A rerun
resumes only when both match; a folder that already holds checkpoints or progress without that
record, a different parent or another dataset is refused with a message, and a checkpoint being
trained from is never inside the folder the run writes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lkseg.errors import LkSegError
from lkseg.utils.atomic import atomic_write_json
from lkseg.utils.processes import alive, identity

RECORD = "run.json"
#: the trainer writing into the folder now (pid and creation time); a second one is refused
LOCK = "trainer.json"
#: what a run writes into its folder; any of them without a run.json means someone else's results
RUN_OUTPUTS = ("checkpoints/best.safetensors", "checkpoints/last.safetensors", "checkpoints/resume.pt",
               "progress.jsonl")


def source_of(cfg: Any) -> dict:
    """What the run starts from and learns on: parent checkpoint hash or architecture, and the dataset."""
    from lkseg.checkpoint.native import file_sha256

    dataset = str(Path(cfg.dataset).expanduser().resolve())
    if cfg.checkpoint is not None:
        if not Path(cfg.checkpoint).is_file():
            raise LkSegError(f"--checkpoint {cfg.checkpoint} does not exist")
        return {"parent_sha256": file_sha256(cfg.checkpoint), "dataset": dataset}
    return {"architecture": cfg.architecture, "model_config": cfg.model_config, "labels": cfg.labels,
            "dataset": dataset}


def claim_out_folder(cfg: Any, write: bool = True) -> None:
    """Refuse an ``--out`` folder this run must not write into; record the run's source in a new one."""
    out = Path(cfg.out).expanduser().resolve()
    if cfg.checkpoint is not None:
        src = Path(cfg.checkpoint).expanduser().resolve()
        if out == src.parent or out in src.parents:
            raise LkSegError(f"--checkpoint {cfg.checkpoint} lies inside --out {cfg.out}, which the run writes; "
                             "fine-tune into a new --out folder (or copy the checkpoint out first)")
    _refuse_second_trainer(out)
    wanted = source_of(cfg)
    record = out / RECORD
    if record.is_file():
        try:
            found = json.loads(record.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise LkSegError(f"{record} cannot be read ({exc}); the job folder is damaged: use a new --out") from None
        if found != wanted:
            raise LkSegError(f"{cfg.out} holds another run ({_describe(found)}), not one of {_describe(wanted)}; "
                             "it was not changed. Use a new --out folder to start this run")
        return
    made = [rel for rel in RUN_OUTPUTS if (out / rel).exists()]
    if made:
        raise LkSegError(f"{cfg.out} already holds results this run did not make ({', '.join(made)}); nothing "
                         "was changed. Use a new --out folder")
    if write:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(record, wanted)


def hold_out_folder(cfg: Any) -> Path:
    """Record this process as the folder's trainer (released by :func:`release_out_folder`)."""
    lock = Path(cfg.out).expanduser().resolve() / LOCK
    atomic_write_json(lock, identity())
    return lock


def release_out_folder(lock: Path) -> None:
    me = identity()
    try:
        if json.loads(lock.read_text(encoding="utf-8")) == me:
            lock.unlink()
    except (OSError, ValueError):
        pass


def _refuse_second_trainer(out: Path) -> None:
    try:
        holder = json.loads((out / LOCK).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if isinstance(holder, dict) and holder != identity() and alive(holder):
        raise LkSegError(f"another trainer (pid {holder.get('pid')}) is writing into {out}; wait for it, or cancel "
                         f"it (lkseg jobs cancel {out}) before starting another run there")


def _describe(source: dict) -> str:
    what = (f"parent checkpoint sha256 {source['parent_sha256'][:12]}..." if source.get("parent_sha256")
            else f"architecture {source.get('architecture')}")
    return f"{what} on dataset {source.get('dataset', '?')}"
