"""The dataset's label table: how ``dataset.json`` holds it (MSD ``labels`` plus our ``lkseg_labels``),
how a case's table is checked and mapped onto it, and reading a table the user names (built-in name,
JSON file, checkpoint or dataset)."""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from lkseg.dataset.files import (
    FILE_ENDING,
    DatasetError,
)
from lkseg.errors import LkSegError

log = logging.getLogger(__name__)


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-]+", " ", name).strip().casefold()


def _labels_module():  # imported lazily: lkseg.checkpoint.labels is a sibling module
    from lkseg.checkpoint import labels
    return labels


# --------------------------------------------------------------------------- helpers
def empty_dataset_json(table: Any, name: str, description: str, modality: str) -> dict:
    return {
        "name": name,
        "description": description or "Corrected cases collected with LargeKernelSeg",
        "tensorImageSize": "3D",
        "reference": "",
        "licence": "",
        "modality": {"0": modality},
        "channel_names": {"0": modality},
        "labels": {"background": 0, **{lab.name: int(lab.value) for lab in table.labels}},
        "lkseg_labels": {"name": getattr(table, "name", ""), "labels": table.to_list()},
        "numTraining": 0,
        "numTest": 0,
        "file_ending": FILE_ENDING,
        "training": [],
        "test": [],
    }


def table_from_json(data: dict, where: Path) -> Any:
    labels = _labels_module()
    stored = data.get("lkseg_labels")
    try:
        if stored:
            return labels.LabelTable.from_list(stored["labels"], name=stored.get("name", ""))
        # a dataset made by another tool: names only, from the nnU-Net/MSD "labels" key
        raw = data["labels"]
        pairs = ([(int(v), str(k)) for k, v in raw.items()] if all(not str(k).isdigit() for k in raw)
                 else [(int(k), str(v)) for k, v in raw.items()])
        items = [labels.Label(value=v, name=n, color=_fallback_color(v), category=None, type=None)
                 for v, n in sorted(pairs) if v != 0]
        return labels.LabelTable(items, name=data.get("name", ""))
    except (KeyError, TypeError, ValueError) as exc:
        raise DatasetError(f"{where} has no usable label table ({exc}); expected 'lkseg_labels' or 'labels'") from None


def _fallback_color(v: int) -> tuple[int, int, int]:
    rng = np.random.default_rng(v)
    return tuple(int(c) for c in rng.integers(40, 255, 3))  # type: ignore[return-value]


def table_conflicts(table: Any, ds_table: Any, only_values: set[int] | None = None) -> list[str]:
    """Why ``table`` cannot be used as-is for ``ds_table`` (empty when compatible).

    Compatible means: every label of ``table`` (restricted to ``only_values`` when given)
    exists in the dataset's table with the same value and the same name (case, spaces and
    underscores ignored). Colours and codes may differ.
    """
    problems = []
    ds_by_value = {int(lab.value): lab for lab in ds_table.labels}
    for lab in table.labels:
        v = int(lab.value)
        if only_values is not None and v not in only_values:
            continue
        other = ds_by_value.get(v)
        if other is None:
            problems.append(f"value {v} ({lab.name}) is not in the dataset's table")
        elif _norm(other.name) != _norm(lab.name):
            problems.append(f"value {v} is {lab.name!r} here but {other.name!r} in the dataset")
    return problems


def renumber_by_name(lab: np.ndarray, table: Any, ds_table: Any, present: set[int]) -> np.ndarray:
    ds_by_name = {_norm(x.name): int(x.value) for x in ds_table.labels}
    lut = np.zeros(max([int(v) for v in table.values] + [0]) + 1, dtype=np.int64)
    missing = []
    for x in table.labels:
        v = int(x.value)
        target = ds_by_name.get(_norm(x.name))
        if target is None:
            if v in present:
                missing.append(x.name)
            continue
        lut[v] = target
    if missing:
        raise DatasetError(f"labels {missing} have no label of the same name in the dataset's table "
                           f"({', '.join(ds_table.names)}); rename them or remove them from the label map")
    return lut[lab]


def load_label_table(spec: str | os.PathLike) -> Any:
    """A label table from a built-in name (``BTCV``, ``AMOS``, ``FLARE21``...), a JSON file
    (a list of labels, or ``{"name", "labels"}``, or a ``dataset.json``), or a checkpoint
    (``.safetensors``: its card's table)."""
    labels = _labels_module()
    path = Path(spec)
    if path.suffix == ".safetensors" and path.is_file():
        from lkseg.checkpoint.native import read_card
        return read_card(path).labels
    if path.suffix == ".json" or path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DatasetError(f"cannot read the label table {path}: {exc}") from None
        if isinstance(data, dict) and ("lkseg_labels" in data or "training" in data):
            return table_from_json(data, path)
        try:
            if isinstance(data, list):
                return labels.LabelTable.from_list(data, name=path.stem)
            return labels.LabelTable.from_list(data["labels"], name=data.get("name", path.stem))
        except (KeyError, TypeError, ValueError) as exc:
            raise DatasetError(f"{path} is not a label table ({exc}); expected a list of "
                               "{value, name, color} objects or {\"name\", \"labels\"}") from None
    try:
        return labels.get_table(str(spec))
    except (KeyError, ValueError, LkSegError) as exc:
        raise DatasetError(f"unknown label table {str(spec)!r}: give a built-in name (BTCV, AMOS, FLARE21), "
                           f"a JSON file or a checkpoint ({exc})") from None
