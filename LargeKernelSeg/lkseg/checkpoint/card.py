"""The model card: everything needed to use a checkpoint, stored inside it as JSON.

A card names the architecture and its hyper-parameters, the input channels, the label table,
the preprocessing (orientation, target spacing, intensity window or normalisation, foreground
cropping), the sliding-window inference settings and the provenance (parent checkpoint hash,
training data summary, validation metrics, creation time, lkseg version). It is written into the
metadata of a ``.safetensors`` checkpoint (see :mod:`lkseg.checkpoint`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from lkseg import __version__
from lkseg.checkpoint.labels import LabelError, LabelTable, builtin_table
from lkseg.errors import LkSegError

__all__ = ["CheckpointError", "ModelCard", "Preprocessing", "InferenceSettings", "Provenance",
           "FORMAT_NAME", "FORMAT_VERSION", "DEFAULT_WINDOW"]

FORMAT_NAME = "lkseg-checkpoint"
FORMAT_VERSION = 1
#: CT soft-tissue window of the official UX-Net / RepUX-Net pipelines (FLARE, AMOS)
DEFAULT_WINDOW: dict[str, Any] = {"mode": "window", "a_min": -125.0, "a_max": 275.0, "b_min": 0.0, "b_max": 1.0,
                                  "clip": True}
INTENSITY_MODES = ("window", "zscore", "none")
#: the kinds of image a card may say it was trained on (the first word of its ``modality``)
MODALITIES = ("CT", "MR")
BLEND_MODES = ("gaussian", "constant")
#: ``inference.precision``: "auto" lets each device reduce precision; "fp32" keeps every device in float32
CARD_PRECISIONS = ("auto", "fp32")


class CheckpointError(LkSegError):
    """A checkpoint or model card is missing, malformed or does not match its network."""


#: bounds a card is checked against before any network is built or buffer allocated
MAX_IN_CHANNELS = 64
MAX_CLASSES = 1024
MAX_ROI_SIDE = 1024
MAX_ROI_VOXELS = 512 ** 3
MAX_SW_BATCH = 512
SPACING_MM = (0.01, 100.0)


def _utc_now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _jsonable(value: Any, where: str) -> Any:
    """``value`` as plain JSON types (tuples become lists); error when it is not representable."""
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{where} must hold plain JSON values (numbers, strings, lists, dicts): {exc}") from None


def _triple(value: Any, where: str, kind: type) -> tuple:
    if not isinstance(value, (list, tuple)) or len(value) != 3:
        raise CheckpointError(f"{where} must be 3 numbers (i, j, k), got {value!r}")
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise CheckpointError(f"{where} must be 3 positive numbers, got {value!r}")
        if kind is int and float(v) != int(v):
            raise CheckpointError(f"{where} must be 3 positive integers, got {value!r}")
        out.append(kind(v))
    return tuple(out)


@dataclass
class Preprocessing:
    """How an image is prepared for the network (MONAI-style pipeline, see the official repositories)."""

    orientation: str = "RAS"
    #: target voxel spacing in mm along i, j, k of the oriented image; None keeps the input spacing
    spacing: tuple[float, float, float] | None = None
    #: {"mode": "window", a_min, a_max, b_min, b_max, clip} | {"mode": "zscore"} | {"mode": "none"}
    intensity: dict = field(default_factory=lambda: dict(DEFAULT_WINDOW))
    crop_foreground: bool = False

    def __post_init__(self) -> None:
        o = str(self.orientation).upper()
        axes = [{"R": 0, "L": 0, "A": 1, "P": 1, "S": 2, "I": 2}.get(c) for c in o]
        if len(o) != 3 or None in axes or sorted(axes) != [0, 1, 2]:  # type: ignore[type-var]
            raise CheckpointError(f"preprocessing.orientation {self.orientation!r} is not an axis code like 'RAS'")
        self.orientation = o
        if self.spacing is not None:
            self.spacing = _triple(self.spacing, "preprocessing.spacing", float)  # type: ignore[assignment]
            if not all(SPACING_MM[0] <= s <= SPACING_MM[1] for s in self.spacing):
                raise CheckpointError(f"preprocessing.spacing {list(self.spacing)} mm is outside "
                                      f"{SPACING_MM[0]}..{SPACING_MM[1]} mm; is the card damaged?")
        if not isinstance(self.intensity, dict):
            raise CheckpointError(f"preprocessing.intensity must be an object with 'mode', got {self.intensity!r}")
        intensity = _jsonable(self.intensity, "preprocessing.intensity")
        mode = intensity.get("mode")
        if mode not in INTENSITY_MODES:
            raise CheckpointError(f"preprocessing.intensity.mode {mode!r} is not one of {', '.join(INTENSITY_MODES)}")
        if mode == "window":
            intensity = {**DEFAULT_WINDOW, **intensity}
            for key in ("a_min", "a_max", "b_min", "b_max"):
                v = intensity[key]
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    raise CheckpointError(f"preprocessing.intensity.{key} must be a number, got {v!r}")
                intensity[key] = float(v)
            if not intensity["a_min"] < intensity["a_max"]:
                raise CheckpointError(f"preprocessing.intensity: a_min ({intensity['a_min']}) must be below "
                                      f"a_max ({intensity['a_max']})")
            intensity["clip"] = bool(intensity["clip"])
        self.intensity = intensity
        self.crop_foreground = bool(self.crop_foreground)

    def to_dict(self) -> dict[str, Any]:
        return {"orientation": self.orientation, "spacing": list(self.spacing) if self.spacing else None,
                "intensity": dict(self.intensity), "crop_foreground": self.crop_foreground}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Preprocessing":
        _check_keys(d, "preprocessing", {"orientation", "spacing", "intensity", "crop_foreground"})
        return cls(**d)


@dataclass
class InferenceSettings:
    """Sliding-window inference settings (MONAI ``sliding_window_inference``)."""

    roi_size: tuple[int, int, int] = (96, 96, 96)
    overlap: float = 0.5
    blend: str = "gaussian"
    sw_batch_size: int = 4
    #: keep only the largest connected piece of each organ (decided on the model's cross-validation)
    largest_component: bool = False
    #: "fp32" when this model's labels were measured to change under bfloat16/float16 (thin class margins)
    precision: str = "auto"

    def __post_init__(self) -> None:
        self.roi_size = _triple(self.roi_size, "inference.roi_size", int)  # type: ignore[assignment]
        if self.precision not in CARD_PRECISIONS:
            raise CheckpointError(f"inference.precision {self.precision!r} is not one of {', '.join(CARD_PRECISIONS)}")
        if not isinstance(self.largest_component, bool):
            raise CheckpointError(f"inference.largest_component must be true or false, got {self.largest_component!r}")
        if max(self.roi_size) > MAX_ROI_SIDE or math.prod(self.roi_size) > MAX_ROI_VOXELS:
            raise CheckpointError(f"inference.roi_size {list(self.roi_size)} is larger than any network window "
                                  f"({MAX_ROI_SIDE} per side, {MAX_ROI_VOXELS:,} voxels); is the card damaged?")
        if isinstance(self.overlap, bool) or not isinstance(self.overlap, (int, float)) or not 0 <= self.overlap < 1:
            raise CheckpointError(f"inference.overlap must be a number in [0, 1), got {self.overlap!r}")
        self.overlap = float(self.overlap)
        if self.blend not in BLEND_MODES:
            raise CheckpointError(f"inference.blend {self.blend!r} is not one of {', '.join(BLEND_MODES)}")
        if isinstance(self.sw_batch_size, bool) or not isinstance(self.sw_batch_size, int) or self.sw_batch_size < 1:
            raise CheckpointError(f"inference.sw_batch_size must be a positive integer, got {self.sw_batch_size!r}")
        if self.sw_batch_size > MAX_SW_BATCH:
            raise CheckpointError(f"inference.sw_batch_size {self.sw_batch_size} is above {MAX_SW_BATCH}")

    def to_dict(self) -> dict[str, Any]:
        return {"roi_size": list(self.roi_size), "overlap": self.overlap, "blend": self.blend,
                "sw_batch_size": self.sw_batch_size, **({"largest_component": True} if self.largest_component else {}),
                **({"precision": self.precision} if self.precision != "auto" else {})}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "InferenceSettings":
        _check_keys(d, "inference", {"roi_size", "overlap", "blend", "sw_batch_size", "largest_component",
                                       "precision"})
        return cls(**d)


@dataclass
class Provenance:
    """Where the weights come from."""

    #: sha256 of the checkpoint file these weights were fine-tuned from (None for trained from scratch)
    parent_sha256: str | None = None
    #: summary of the training data, e.g. {"dataset": "BTCV", "cases": 24}
    training_data: dict = field(default_factory=dict)
    #: validation metrics, e.g. {"val_dice": 0.83}
    metrics: dict = field(default_factory=dict)
    created: str = field(default_factory=_utc_now)
    lkseg_version: str = __version__
    notes: str = ""

    def __post_init__(self) -> None:
        if self.parent_sha256 is not None:
            h = str(self.parent_sha256).lower()
            if len(h) != 64 or any(c not in "0123456789abcdef" for c in h):
                raise CheckpointError(f"provenance.parent_sha256 must be 64 hex digits, got {self.parent_sha256!r}")
            self.parent_sha256 = h
        for key in ("training_data", "metrics"):
            value = getattr(self, key)
            if not isinstance(value, dict):
                raise CheckpointError(f"provenance.{key} must be an object, got {value!r}")
            setattr(self, key, _jsonable(value, f"provenance.{key}"))
        self.created, self.lkseg_version, self.notes = str(self.created), str(self.lkseg_version), str(self.notes)

    def to_dict(self) -> dict[str, Any]:
        return {"parent_sha256": self.parent_sha256, "training_data": dict(self.training_data),
                "metrics": dict(self.metrics), "created": self.created, "lkseg_version": self.lkseg_version,
                "notes": self.notes}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Provenance":
        _check_keys(d, "provenance", {"parent_sha256", "training_data", "metrics", "created", "lkseg_version",
                                      "notes"})
        return cls(**d)


def _check_keys(d: Any, where: str, known: set[str]) -> None:
    if not isinstance(d, dict):
        raise CheckpointError(f"{where} must be an object, got {type(d).__name__}")
    unknown = sorted(set(d) - known)
    if unknown:
        raise CheckpointError(f"{where} has unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")


@dataclass
class ModelCard:
    """Self-description of a checkpoint (see the module docstring)."""

    architecture: str
    hyperparameters: dict
    in_channels: int
    labels: LabelTable
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    inference: InferenceSettings = field(default_factory=InferenceSettings)
    provenance: Provenance = field(default_factory=Provenance)
    #: the images it was trained on: "CT", "MR", or "MR T2-weighted" (kind first, then the sequence); "" unknown
    modality: str = ""
    format: str = FORMAT_NAME
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if not isinstance(self.architecture, str) or not self.architecture.strip():
            raise CheckpointError(f"architecture must be a registered network name, got {self.architecture!r}")
        if not isinstance(self.hyperparameters, dict):
            raise CheckpointError(f"hyperparameters must be an object, got {self.hyperparameters!r}")
        self.hyperparameters = _jsonable(self.hyperparameters, "hyperparameters")
        if isinstance(self.in_channels, bool) or not isinstance(self.in_channels, int) or self.in_channels < 1:
            raise CheckpointError(f"in_channels must be a positive integer, got {self.in_channels!r}")
        if self.in_channels > MAX_IN_CHANNELS:
            raise CheckpointError(f"in_channels {self.in_channels} is above {MAX_IN_CHANNELS}; is the card damaged?")
        if not isinstance(self.labels, LabelTable):
            raise CheckpointError(f"labels must be a LabelTable, got {type(self.labels).__name__}")
        if len(self.labels) == 0:
            raise CheckpointError("the label table is empty; a model needs at least one foreground label")
        if self.labels.num_classes > MAX_CLASSES:
            raise CheckpointError(f"the label table needs {self.labels.num_classes} output classes, above "
                                  f"{MAX_CLASSES}; is the card damaged?")
        for key, kind in (("preprocessing", Preprocessing), ("inference", InferenceSettings),
                          ("provenance", Provenance)):
            if not isinstance(getattr(self, key), kind):
                raise CheckpointError(f"{key} must be a {kind.__name__}, got {type(getattr(self, key)).__name__}")
        if not isinstance(self.modality, str) or len(self.modality) > 64 or \
                (self.modality and self.modality.split()[0] not in MODALITIES):
            raise CheckpointError(f"modality must start with one of {', '.join(MODALITIES)} (e.g. 'MR T2-weighted'), "
                                  f"got {self.modality!r}")
        if self.format != FORMAT_NAME:
            raise CheckpointError(f"format is {self.format!r}, not {FORMAT_NAME!r}")
        if self.format_version != FORMAT_VERSION:
            raise CheckpointError(f"format version {self.format_version!r} is not supported (this lkseg reads "
                                  f"version {FORMAT_VERSION})")

    @property
    def out_channels(self) -> int:
        """Network output channels: number of classes including background."""
        return self.labels.num_classes

    # ------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "format_version": self.format_version,
            "architecture": self.architecture,
            "hyperparameters": dict(self.hyperparameters),
            "in_channels": self.in_channels,
            "labels": {"name": self.labels.name, "labels": self.labels.to_list()},
            "preprocessing": self.preprocessing.to_dict(),
            "inference": self.inference.to_dict(),
            "provenance": self.provenance.to_dict(),
            **({"modality": self.modality} if self.modality else {}),
        }

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, d: Any) -> "ModelCard":
        """Validate and build a card; raises :class:`CheckpointError` naming the bad field.

        ``format``/``format_version`` may be left out (hand-written cards for ``lkseg import``);
        when present they must be this format and a version this lkseg reads. ``labels`` may be
        ``{"name", "labels": [...]}``, a list of labels, or the name of a built-in table ("btcv").
        """
        if not isinstance(d, dict):
            raise CheckpointError(f"a model card must be a JSON object, got {type(d).__name__}")
        fmt = d.get("format", FORMAT_NAME)
        if fmt != FORMAT_NAME:
            raise CheckpointError(f"the card's format is {fmt!r}, not {FORMAT_NAME!r}: this is not an lkseg model card")
        version = d.get("format_version", FORMAT_VERSION)
        if isinstance(version, bool) or not isinstance(version, int):
            raise CheckpointError(f"format_version must be an integer, got {version!r}")
        if version > FORMAT_VERSION:
            raise CheckpointError(f"the card has format version {version}, newer than this lkseg {__version__} "
                                  f"reads (version {FORMAT_VERSION}); upgrade lkseg to use this checkpoint")
        if version < 1:
            raise CheckpointError(f"format_version {version} is not valid")
        _check_keys(d, "model card", {"format", "format_version", "architecture", "hyperparameters", "in_channels",
                                      "labels", "preprocessing", "inference", "provenance", "modality"})
        missing = [k for k in ("architecture", "labels") if k not in d]
        if missing:
            raise CheckpointError(f"the model card lacks {', '.join(missing)}")
        try:
            labels = _labels_from(d["labels"])
        except LabelError as exc:
            raise CheckpointError(f"labels: {exc}") from None
        return cls(
            architecture=d["architecture"],
            hyperparameters=d.get("hyperparameters") or {},
            in_channels=d.get("in_channels", 1),
            labels=labels,
            preprocessing=Preprocessing.from_dict(d.get("preprocessing") or {}),
            inference=InferenceSettings.from_dict(d.get("inference") or {}),
            provenance=Provenance.from_dict(d.get("provenance") or {}),
            modality=d.get("modality") or "",
        )

    @classmethod
    def from_json(cls, text: str) -> "ModelCard":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"the model card is not valid JSON ({exc})") from None
        return cls.from_dict(data)

    # ------------------------------------------------------------ display
    def summary(self) -> str:
        """A readable multi-line description (``lkseg info``, the Slicer panel, the viewer)."""
        hp = ", ".join(f"{k}={_short(v)}" for k, v in self.hyperparameters.items()) or "paper configuration"
        pre, inf, prov = self.preprocessing, self.inference, self.provenance
        spacing = " x ".join(f"{s:g}" for s in pre.spacing) + " mm" if pre.spacing else "input spacing (no resampling)"
        it = pre.intensity
        if it["mode"] == "window":
            intensity = (f"window [{it['a_min']:g}, {it['a_max']:g}] -> [{it['b_min']:g}, {it['b_max']:g}]"
                         f"{', clipped' if it['clip'] else ''}")
        elif it["mode"] == "zscore":
            intensity = "z-score normalisation"
        else:
            intensity = "none"
        table = self.labels
        lines = [
            f"Architecture:   {self.architecture} ({hp})",
            f"Modality:       {self.modality or 'not stated'}",
            f"Channels:       {self.in_channels} in, {self.out_channels} out (background + {len(table)} labels)",
            f"Labels:         {table.name or 'custom'} ({len(table)})",
        ]
        lines += [f"  {lab.value:>3}  {lab.name}" + (f"  [{lab.type.meaning}"
                                                    + (f", {lab.modifier.meaning}" if lab.modifier else "") + "]"
                                                    if lab.type else "") for lab in table.labels]
        lines += [
            f"Orientation:    {pre.orientation}",
            f"Spacing:        {spacing}",
            f"Intensity:      {intensity}",
            f"Crop:           {'to the foreground' if pre.crop_foreground else 'no'}",
            f"ROI:            {' x '.join(str(r) for r in inf.roi_size)}, overlap {inf.overlap:g}, "
            f"{inf.blend} blending, {inf.sw_batch_size} windows per batch",
            f"Organs:         {'only the largest piece of each kept' if inf.largest_component else 'every piece kept'}",
            f"Precision:      {'float32 on every device' if inf.precision == 'fp32' else 'per device (bf16/fp16 where fast)'}",
            f"Trained on:     {_describe(prov.training_data) or 'unknown'}",
            f"Metrics:        {_describe(prov.metrics) or 'none recorded'}",
            f"Parent:         {prov.parent_sha256 or 'none'}",
            f"Created:        {prov.created} (lkseg {prov.lkseg_version})",
        ]
        if prov.notes:
            lines.append(f"Notes:          {prov.notes}")
        return "\n".join(lines)


def _labels_from(data: Any) -> LabelTable:
    if isinstance(data, str):  # a card's fields are data: a built-in table's name, never a file to open
        return builtin_table(data)
    if isinstance(data, dict):
        if "labels" not in data:
            raise LabelError("expected {'name': ..., 'labels': [...]}")
        return LabelTable.from_list(data["labels"], name=str(data.get("name", "")))
    return LabelTable.from_list(data)


def _short(v: Any) -> str:
    text = json.dumps(v) if not isinstance(v, str) else v
    return text if len(text) <= 40 else text[:37] + "..."


def _describe(d: dict) -> str:
    return ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {_short(v)}" for k, v in d.items())
