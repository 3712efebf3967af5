"""Label tables: which integer value in a label map is which organ.

A :class:`LabelTable` lists the foreground labels of a segmentation (background 0 is implicit
and never listed), each with a name, an RGB colour and standard terminology codes (SNOMED CT,
as 3D Slicer's terminology and DICOM SEG use them: category, type and optional laterality
modifier). Built-in tables follow the published label orders of the benchmarks the
large-kernel papers report on:

- BTCV (Multi-Atlas Labeling Beyond the Cranial Vault, MICCAI 2015): 13 abdominal organs.
- AMOS 2022 (Ji et al., "AMOS: A Large-Scale Abdominal Multi-Organ Benchmark", NeurIPS 2022): 15.
- FLARE21 (Ma et al., "Fast and Low-GPU-memory abdomen CT organ segmentation: the FLARE
  challenge", MedIA 2022): 4 organs, 1 liver, 2 kidney, 3 spleen, 4 pancreas.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from lkseg.errors import LkSegError

log = logging.getLogger(__name__)

__all__ = ["Code", "Label", "LabelTable", "LabelError", "ANATOMICAL_STRUCTURE", "BTCV", "AMOS", "FLARE21",
           "BUILTIN_TABLES", "get_table"]


class LabelError(LkSegError, ValueError):
    """A label table is malformed or a label was not found."""


@dataclass(frozen=True)
class Code:
    """A coded concept: coding scheme designator, code value and its meaning (DICOM style)."""

    scheme: str
    value: str
    meaning: str

    def to_dict(self) -> dict[str, str]:
        return {"scheme": self.scheme, "value": self.value, "meaning": self.meaning}

    @classmethod
    def from_any(cls, data: Any, where: str = "code") -> "Code | None":
        """A code from ``None``, a ``Code``, a ``{"scheme", "value", "meaning"}`` dict or a 3-list."""
        if data is None or isinstance(data, Code):
            return data
        if isinstance(data, dict):
            try:
                return cls(str(data["scheme"]), str(data["value"]), str(data.get("meaning", "")))
            except KeyError as exc:
                raise LabelError(f"{where}: a code needs 'scheme' and 'value' (missing {exc})") from None
        if isinstance(data, (list, tuple)) and len(data) == 3:
            return cls(*(str(x) for x in data))
        raise LabelError(f"{where}: expected a code object {{scheme, value, meaning}}, got {data!r}")


#: category of every organ label (SNOMED CT "Anatomical Structure")
ANATOMICAL_STRUCTURE = Code("SCT", "123037004", "Anatomical Structure")
RIGHT = Code("SCT", "24028007", "Right")
LEFT = Code("SCT", "7771000", "Left")


@dataclass(frozen=True)
class Label:
    """One foreground label: value (> 0), name, RGB colour (0-255) and terminology codes."""

    value: int
    name: str
    color: tuple[int, int, int]
    category: Code | None = None
    type: Code | None = None
    #: laterality or other modifier of ``type`` (e.g. SNOMED CT Right 24028007 / Left 7771000)
    modifier: Code | None = None

    def __post_init__(self) -> None:
        if isinstance(self.color, list):
            object.__setattr__(self, "color", tuple(self.color))

    @property
    def color_float(self) -> tuple[float, float, float]:
        """The colour scaled to 0-1 (as Slicer and VTK want it)."""
        return tuple(c / 255.0 for c in self.color)  # type: ignore[return-value]

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"value": int(self.value), "name": self.name, "color": [int(c) for c in self.color]}
        for key in ("category", "type", "modifier"):
            code = getattr(self, key)
            if code is not None:
                d[key] = code.to_dict()
        return d


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-]+", " ", name).strip().casefold()


@dataclass
class LabelTable:
    """The foreground labels of a segmentation; background 0 is implicit and never listed."""

    labels: list[Label] = field(default_factory=list)
    name: str = ""

    def __post_init__(self) -> None:
        self.labels = list(self.labels)
        _validate(self.labels, self.name or "label table")

    # ------------------------------------------------------------ queries
    @property
    def num_classes(self) -> int:
        """Number of network output channels: largest value + 1 (background included)."""
        return max((lab.value for lab in self.labels), default=0) + 1

    @property
    def values(self) -> list[int]:
        return [lab.value for lab in self.labels]

    @property
    def names(self) -> list[str]:
        return [lab.name for lab in self.labels]

    def by_value(self, value: int) -> Label:
        for lab in self.labels:
            if lab.value == int(value):
                return lab
        raise LabelError(f"{self._title()} has no label with value {value}; values: {self.values}")

    def by_name(self, name: str) -> Label:
        """The label called ``name`` (exact match first, then ignoring case, spaces, '_' and '-')."""
        for lab in self.labels:
            if lab.name == name:
                return lab
        for lab in self.labels:
            if _norm(lab.name) == _norm(name):
                return lab
        raise LabelError(f"{self._title()} has no label named {name!r}; names: {', '.join(self.names)}")

    def same_as(self, other: "LabelTable") -> bool:
        """True when both tables map the same values to the same names.

        Names are compared ignoring case, spaces, underscores and hyphens; colours, codes and
        the table name may differ.
        """
        mine = {lab.value: _norm(lab.name) for lab in self.labels}
        theirs = {lab.value: _norm(lab.name) for lab in other.labels}
        return mine == theirs

    def __len__(self) -> int:
        return len(self.labels)

    def __iter__(self) -> Iterator[Label]:
        return iter(self.labels)

    def __contains__(self, value: object) -> bool:
        return isinstance(value, int) and value in self.values

    def _title(self) -> str:
        return f"label table {self.name!r}" if self.name else "the label table"

    # ------------------------------------------------------------ (de)serialisation
    def to_list(self) -> list[dict[str, Any]]:
        """JSON-able list of ``{value, name, color, category?, type?, modifier?}``."""
        return [lab.to_dict() for lab in self.labels]

    @classmethod
    def from_list(cls, items: Any, name: str = "", source: str = "") -> "LabelTable":
        """Build and validate a table from :meth:`to_list` output (``source`` names it in errors)."""
        where = source or (f"label table {name!r}" if name else "label table")
        if not isinstance(items, list):
            raise LabelError(f"{where}: expected a list of labels, got {type(items).__name__}")
        labels = []
        for i, item in enumerate(items):
            here = f"{where}, entry {i + 1}"
            if not isinstance(item, dict):
                raise LabelError(f"{here}: expected an object {{value, name, color}}, got {item!r}")
            missing = [k for k in ("value", "name") if k not in item]
            if missing:
                raise LabelError(f"{here}: missing {', '.join(missing)}")
            value = item["value"]
            if isinstance(value, bool) or not isinstance(value, int):
                if isinstance(value, float) and value.is_integer():
                    value = int(value)
                else:
                    raise LabelError(f"{here}: value must be an integer, got {value!r}")
            color = item.get("color", item.get("colour"))
            if color is None:
                color = _default_color(value)
            labels.append(Label(
                value=value, name=item["name"], color=_parse_color(color, here),
                category=Code.from_any(item.get("category"), f"{here} category"),
                type=Code.from_any(item.get("type"), f"{here} type"),
                modifier=Code.from_any(item.get("modifier"), f"{here} modifier"),
            ))
        _validate(labels, where)
        return cls(labels, name=name)

    def to_json(self) -> str:
        return json.dumps({"name": self.name, "labels": self.to_list()}, indent=2)

    @classmethod
    def from_json_file(cls, path: str | os.PathLike) -> "LabelTable":
        """Read a table from JSON: a list of labels, ``{"name", "labels": [...]}``, or a dataset.json
        holding ``lkseg_labels``."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise LabelError(f"label table file {path} does not exist") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise LabelError(f"label table file {path} is not readable JSON ({exc})") from None
        if isinstance(data, dict) and isinstance(data.get("lkseg_labels"), dict):
            data = data["lkseg_labels"]
        if isinstance(data, dict):
            if "labels" not in data:
                raise LabelError(f"label table file {path}: expected a list of labels or an object with 'labels'")
            return cls.from_list(data["labels"], name=str(data.get("name", "") or path.stem), source=str(path))
        return cls.from_list(data, name=path.stem, source=str(path))


def _parse_color(color: Any, where: str) -> tuple[int, int, int]:
    if isinstance(color, str) and re.fullmatch(r"#?[0-9a-fA-F]{6}", color):
        h = color.lstrip("#")
        return (int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16))
    if not isinstance(color, (list, tuple)) or len(color) != 3:
        raise LabelError(f"{where}: color must be 3 integers 0-255 (R, G, B) or '#rrggbb', got {color!r}")
    out = []
    for c in color:
        if isinstance(c, bool) or not isinstance(c, (int, float)) or float(c) != int(c):
            raise LabelError(f"{where}: color must be 3 integers 0-255, got {color!r}")
        out.append(int(c))
    return tuple(out)  # type: ignore[return-value]


def _default_color(value: int) -> tuple[int, int, int]:
    # a deterministic, reasonably distinct colour (golden-angle hue steps)
    import colorsys

    r, g, b = colorsys.hsv_to_rgb((value * 0.618034) % 1.0, 0.65, 0.95)
    return (round(r * 255), round(g * 255), round(b * 255))


def _validate(labels: list[Label], where: str) -> None:
    seen_values: set[int] = set()
    seen_names: dict[str, str] = {}
    for lab in labels:
        if not isinstance(lab, Label):
            raise LabelError(f"{where}: expected Label objects, got {lab!r}")
        if isinstance(lab.value, bool) or not isinstance(lab.value, int):
            raise LabelError(f"{where}: label value {lab.value!r} is not an integer")
        if lab.value <= 0:
            raise LabelError(f"{where}: label {lab.name!r} has value {lab.value}; values must be > 0 "
                             "(0 is the implicit background)")
        if lab.value > 65535:
            raise LabelError(f"{where}: label {lab.name!r} has value {lab.value}; values must be <= 65535")
        if lab.value in seen_values:
            raise LabelError(f"{where}: value {lab.value} is used twice; every label needs its own value")
        seen_values.add(lab.value)
        if not isinstance(lab.name, str) or not lab.name.strip():
            raise LabelError(f"{where}: label {lab.value} has no name")
        key = _norm(lab.name)
        if key in seen_names:
            raise LabelError(f"{where}: name {lab.name!r} is used twice (also {seen_names[key]!r}); "
                             "names must be unique")
        seen_names[key] = lab.name
        color = lab.color
        if (not isinstance(color, (tuple, list)) or len(color) != 3
                or not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in color)):
            raise LabelError(f"{where}: label {lab.name!r} has colour {color!r}; use 3 integers 0-255 (R, G, B)")
        for key_name in ("category", "type", "modifier"):
            code = getattr(lab, key_name)
            if code is not None and not isinstance(code, Code):
                raise LabelError(f"{where}: label {lab.name!r} {key_name} must be a Code, got {code!r}")


# --------------------------------------------------------------------------- built-in tables
def _sct(value: str, meaning: str) -> Code:
    return Code("SCT", value, meaning)


# Organ -> (colour, type code, modifier); colours close to Slicer's GenericAnatomyColors.
_SPLEEN = ((157, 108, 162), _sct("78961009", "Spleen"), None)
_KIDNEY_R = ((185, 102, 83), _sct("64033007", "Kidney"), RIGHT)
_KIDNEY_L = ((212, 126, 151), _sct("64033007", "Kidney"), LEFT)
_KIDNEY = ((185, 102, 83), _sct("64033007", "Kidney"), None)
_GALLBLADDER = ((139, 150, 98), _sct("28231008", "Gallbladder"), None)
_ESOPHAGUS = ((211, 171, 143), _sct("32849002", "Esophagus"), None)
_LIVER = ((221, 130, 101), _sct("10200004", "Liver"), None)
_STOMACH = ((216, 132, 105), _sct("69695003", "Stomach"), None)
_AORTA = ((224, 97, 76), _sct("15825003", "Aorta"), None)
_IVC = ((0, 151, 206), _sct("64131007", "Inferior vena cava"), None)
_PORTAL = ((0, 112, 165), _sct("32764006", "Portal vein"), None)
_PANCREAS = ((249, 180, 111), _sct("15776009", "Pancreas"), None)
_ADRENAL_R = ((244, 214, 49), _sct("23451007", "Adrenal gland"), RIGHT)
_ADRENAL_L = ((200, 170, 30), _sct("23451007", "Adrenal gland"), LEFT)
_DUODENUM = ((255, 193, 149), _sct("38848004", "Duodenum"), None)
_BLADDER = ((222, 154, 132), _sct("89837001", "Urinary bladder"), None)
# AMOS label 15 is "prostate/uterus": one label for two organs, so no single SNOMED CT type
# fits; the type is left empty rather than wrong for half of the cases.
_PROSTATE_UTERUS = ((230, 158, 140), None, None)


def _table(name: str, organs: list[tuple[str, tuple]]) -> LabelTable:
    return LabelTable([Label(value=i + 1, name=n, color=c, category=ANATOMICAL_STRUCTURE, type=t, modifier=m)
                       for i, (n, (c, t, m)) in enumerate(organs)], name=name)


#: BTCV (Multi-Atlas Labeling Beyond the Cranial Vault), 13 organs in the published order
BTCV = _table("BTCV", [
    ("spleen", _SPLEEN), ("right kidney", _KIDNEY_R), ("left kidney", _KIDNEY_L), ("gallbladder", _GALLBLADDER),
    ("esophagus", _ESOPHAGUS), ("liver", _LIVER), ("stomach", _STOMACH), ("aorta", _AORTA),
    ("inferior vena cava", _IVC), ("portal vein and splenic vein", _PORTAL), ("pancreas", _PANCREAS),
    ("right adrenal gland", _ADRENAL_R), ("left adrenal gland", _ADRENAL_L),
])

#: AMOS 2022, 15 organs in the published order
AMOS = _table("AMOS", [
    ("spleen", _SPLEEN), ("right kidney", _KIDNEY_R), ("left kidney", _KIDNEY_L), ("gallbladder", _GALLBLADDER),
    ("esophagus", _ESOPHAGUS), ("liver", _LIVER), ("stomach", _STOMACH), ("aorta", _AORTA),
    ("postcava", _IVC), ("pancreas", _PANCREAS), ("right adrenal gland", _ADRENAL_R),
    ("left adrenal gland", _ADRENAL_L), ("duodenum", _DUODENUM), ("bladder", _BLADDER),
    ("prostate/uterus", _PROSTATE_UTERUS),
])

#: FLARE21: 1 liver, 2 kidney, 3 spleen, 4 pancreas
FLARE21 = _table("FLARE21", [("liver", _LIVER), ("kidney", _KIDNEY), ("spleen", _SPLEEN), ("pancreas", _PANCREAS)])

BUILTIN_TABLES: dict[str, LabelTable] = {"btcv": BTCV, "amos": AMOS, "flare21": FLARE21}
_ALIASES = {"amos22": "amos", "amos2022": "amos", "flare": "flare21", "flare2021": "flare21"}


def _builtin_key(name: str | os.PathLike) -> str:
    key = str(name).strip().lower().replace("-", "").replace("_", "")
    return _ALIASES.get(key, key)


def builtin_table(name: str) -> LabelTable:
    """A built-in table by name ("btcv", "amos", "flare21"; case-insensitive); never opens a file."""
    key = _builtin_key(name)
    if key not in BUILTIN_TABLES:
        shown = name if len(str(name)) <= 40 else str(name)[:37] + "..."
        raise LabelError(f"unknown built-in label table {shown!r}: use one of {', '.join(BUILTIN_TABLES)} or "
                         "list the labels themselves")
    table = BUILTIN_TABLES[key]  # a copy, so that callers cannot change the built-in table
    return LabelTable(list(table.labels), name=table.name)


def get_table(name: str | os.PathLike) -> LabelTable:
    """A built-in table by name ("btcv", "amos", "flare21"; case-insensitive) or the table of a JSON
    file the user named (only for names given by the user, never for fields read from a file)."""
    if _builtin_key(name) in BUILTIN_TABLES:
        return builtin_table(str(name))
    path = Path(name)
    if path.suffix.lower() == ".json" or path.exists():
        return LabelTable.from_json_file(path)
    raise LabelError(f"unknown label table {str(name)!r}: use one of {', '.join(BUILTIN_TABLES)} "
                     "or the path of a JSON file listing {value, name, color} entries")
