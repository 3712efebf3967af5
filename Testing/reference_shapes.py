"""Reads Testing/Data/reference/*_state_dict.tsv: facts about the official implementations.

Each file: header lines starting with '#' ('# source: ...' names the official constructor call,
'# parameters: N', optional '# note: ...'), then one 'key<TAB>shape' line per state-dict entry
(shape 'a,b,c'; empty for a scalar).
"""

from __future__ import annotations

from pathlib import Path

REFERENCE = Path(__file__).resolve().parent / "Data" / "reference"


def load_reference(name: str) -> tuple[int, dict[str, tuple[int, ...]], str]:
    """(parameter count, {key: shape}, header text) of ``<name>_state_dict.tsv`` (or ``name``)."""
    path = REFERENCE / (name if name.endswith(".tsv") else f"{name}_state_dict.tsv")
    params = -1
    shapes: dict[str, tuple[int, ...]] = {}
    header = []
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            header.append(line)
            if line.startswith("# parameters:"):
                params = int(line.split(":", 1)[1].strip())
            continue
        if not line.strip():
            continue
        key, _, shape = line.partition("\t")
        shapes[key] = tuple(int(s) for s in shape.split(",") if s.strip())
    if params < 0:
        raise ValueError(f"{path} has no '# parameters:' line")
    return params, shapes, "\n".join(header)
