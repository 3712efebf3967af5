"""Segment metadata glue: a model card's label table -> Slicer segment ids, names, colours, terminology.

Slicer stores a segment's standard meaning as a ``TerminologyEntry`` tag, a ``~``-separated string:
context ~ category ~ type ~ type modifier ~ anatomic context ~ region ~ region modifier, each code
written ``scheme^value^meaning`` (vtkSlicerTerminologiesModuleLogic::SerializeTerminologyEntry).
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any, Iterable, NamedTuple

import numpy as np

TERMINOLOGY_CONTEXT = "Segmentation category and type - 3D Slicer General Anatomy list"
TERMINOLOGY_FILE = (Path(__file__).resolve().parent.parent / "Resources" / "Terminology"
                    / "SegmentationCategoryTypeModifier-LargeKernelSeg.term.json")
"""The module's own terminology (loaded into Slicer at startup): every code of the built-in label tables,
as Slicer's DICOM master list has it. Entries with these codes name it instead of the General Anatomy
list, which lacks some of them (inferior vena cava, portal vein)."""
ANATOMIC_CONTEXT = "Anatomic codes - DICOM master list"
ANATOMICAL_STRUCTURE = ("SCT", "123037004", "Anatomical Structure")
LABEL_VALUE_TAG = "LargeKernelSeg.LabelValue"
"""Segment tag holding the model's label value, so exports map edited segments back to labels."""


class SegmentSpec(NamedTuple):
    """What one organ becomes in a Slicer segmentation node."""

    segment_id: str
    name: str
    color: tuple[float, float, float]
    terminology: str
    value: int


def _code_text(code: Any) -> str:
    """``scheme^value^meaning`` of a ``lkseg.checkpoint.labels.Code`` (or a 3-tuple), ``^^`` for none."""
    if code is None:
        return "^^"
    if isinstance(code, (tuple, list)):
        parts = [str(p) for p in code]
    else:
        parts = [str(code.scheme), str(code.value), str(code.meaning)]
    return "^".join(re.sub(r"[~^|]", " ", p) for p in parts)


@functools.lru_cache(maxsize=1)
def own_terminology() -> tuple[str, frozenset[tuple[str, str, str]]]:
    """(context name, {(category value, type value, modifier value or "")}) of :data:`TERMINOLOGY_FILE`."""
    data = json.loads(TERMINOLOGY_FILE.read_text(encoding="utf-8"))
    codes = set()
    for category in data["SegmentationCodes"]["Category"]:
        for kind in category.get("Type", []):
            codes.add((category["CodeValue"], kind["CodeValue"], ""))
            codes.update((category["CodeValue"], kind["CodeValue"], m["CodeValue"]) for m in kind.get("Modifier", []))
    return data["SegmentationCategoryTypeContextName"], frozenset(codes)


def _value(code: Any) -> str:
    return "" if code is None else str(code[1] if isinstance(code, (tuple, list)) else code.value)


def terminology_entry(label: Any) -> str:
    """Slicer's terminology string for a ``lkseg.checkpoint.labels.Label``; empty when it has no type code.
    It names the list that holds the label's codes: ours (:func:`own_terminology`), else Slicer's General
    Anatomy list (codes of a user's own label table)."""
    if getattr(label, "type", None) is None:
        return ""
    category = label.category if label.category is not None else ANATOMICAL_STRUCTURE
    modifier = getattr(label, "modifier", None)  # laterality, e.g. SCT 24028007 Right
    context, codes = own_terminology()
    if (_value(category), _value(label.type), _value(modifier)) not in codes:
        context = TERMINOLOGY_CONTEXT
    return "~".join([context, _code_text(category), _code_text(label.type), _code_text(modifier),
                     ANATOMIC_CONTEXT, "^^", "^^"])


def parse_terminology_entry(entry: str) -> dict[str, tuple[str, str, str] | str | None]:
    """Split a terminology string into its context names and (scheme, value, meaning) codes."""
    fields = entry.split("~")
    if len(fields) != 7:
        raise ValueError(f"a terminology entry has 7 '~'-separated fields, got {len(fields)}: {entry!r}")

    def code(text: str) -> tuple[str, str, str] | None:
        parts = text.split("^")
        if len(parts) != 3:
            raise ValueError(f"a code is scheme^value^meaning, got {text!r}")
        return None if not any(parts) else (parts[0], parts[1], parts[2])

    return {"context": fields[0], "category": code(fields[1]), "type": code(fields[2]),
            "type_modifier": code(fields[3]), "anatomic_context": fields[4],
            "region": code(fields[5]), "region_modifier": code(fields[6])}


def _table(card_or_table: Any) -> Any:
    return card_or_table.labels if hasattr(card_or_table, "labels") and hasattr(card_or_table, "architecture") else card_or_table


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_").lower()


def segment_specs(card_or_table: Any) -> list[SegmentSpec]:
    """One :class:`SegmentSpec` per label of a ``ModelCard`` or ``LabelTable``, by label value."""
    table = _table(card_or_table)
    specs: list[SegmentSpec] = []
    used: set[str] = set()
    for label in sorted(table.labels, key=lambda lab: lab.value):
        segment_id = _slug(label.name) or f"label_{label.value}"
        if segment_id in used:
            segment_id = f"{segment_id}_{label.value}"
        used.add(segment_id)
        color = tuple(max(0.0, min(1.0, float(c) / 255.0)) for c in label.color)
        specs.append(SegmentSpec(segment_id, label.name, color, terminology_entry(label), int(label.value)))
    return specs


def segment_id_list(specs: Iterable[SegmentSpec]) -> list[str]:
    """Segment ids indexed by label value - 1 ("" for unused values).

    This is the ``updatedSegmentIDs`` list that
    ``vtkSlicerSegmentationsModuleLogic::ImportLabelmapToSegmentationNode`` maps label 1..N to.
    """
    specs = list(specs)
    ids = [""] * (max((s.value for s in specs), default=0))
    for s in specs:
        if s.value > 0:
            ids[s.value - 1] = s.segment_id
    return ids


def label_value_for_segment(name: str, tag_value: str | None, table: Any) -> int | None:
    """The label value an (edited) segment exports to: its value tag, else its name in the table."""
    if tag_value:
        try:
            value = int(tag_value)
        except ValueError:
            value = None
        if value is not None and value in set(table.values):
            return value
    wanted = name.strip().lower()
    for label in table.labels:
        if label.name.lower() == wanted or _slug(label.name) == _slug(name):
            return int(label.value)
    return None


def compose_label_map(masks: Iterable[tuple[int, np.ndarray]], shape: tuple[int, ...]) -> np.ndarray:
    """Merge per-segment binary masks into one label map (later masks win where they overlap)."""
    top = 0
    out = np.zeros(shape, dtype=np.uint16)
    for value, mask in masks:
        mask = np.asarray(mask)
        if mask.shape != tuple(shape):
            raise ValueError(f"segment mask shape {mask.shape} differs from the volume's {tuple(shape)}")
        out[mask > 0] = value
        top = max(top, value)
    return out.astype(np.uint8) if top <= 255 else out


def segmentation_name(volume_name: str, card: Any) -> str:
    """Name of the result node: the volume's name and the model's architecture."""
    arch = getattr(card, "architecture", "") or "model"
    return f"{volume_name or 'Volume'} segmentation ({arch})"


def table_to_text(table: Any) -> str:
    """A label table as JSON text (kept as a node attribute so exports know the model's labels)."""
    import json

    return json.dumps({"name": getattr(table, "name", ""), "labels": table.to_list()})


def table_from_text(text: str) -> Any:
    """The ``lkseg.checkpoint.labels.LabelTable`` written by :func:`table_to_text`."""
    import json

    from lkseg.checkpoint.labels import LabelTable

    data = json.loads(text)
    return LabelTable.from_list(data["labels"], name=data.get("name", ""))
