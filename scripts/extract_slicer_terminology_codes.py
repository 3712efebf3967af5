"""Write Testing/Data/slicer_terminology/codes.json: the codes of 3D Slicer's own terminology lists
(category, type and type modifier of each category our label tables use), so that the tests check our
terminology file against the lists the codes come from without Slicer installed.

Usage: python scripts/extract_slicer_terminology_codes.py <Slicer source checkout or git dir> [ref]
(reads Modules/Loadable/Terminologies/Resources/SegmentationCategoryTypeModifier-*.json).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "Testing" / "Data" / "slicer_terminology" / "codes.json"
FOLDER = "Modules/Loadable/Terminologies/Resources"
LISTS = ("SegmentationCategoryTypeModifier-SlicerGeneralAnatomy.json", "SegmentationCategoryTypeModifier-DICOM-Master.json")
CATEGORIES = {"123037004"}  # Anatomical Structure: the category of every built-in label


def _read(source: Path, ref: str, name: str) -> dict:
    if (source / FOLDER / name).is_file():
        return json.loads((source / FOLDER / name).read_text(encoding="utf-8"))
    text = subprocess.run(["git", "--git-dir", str(source), "show", f"{ref}:{FOLDER}/{name}"], check=True,
                          capture_output=True, text=True).stdout
    return json.loads(text)


def _code(entry: dict) -> list[str]:
    return [entry["CodingSchemeDesignator"], entry["CodeValue"], entry["CodeMeaning"]]


def main(argv: list[str]) -> int:
    source, ref = Path(argv[0]), (argv[1] if len(argv) > 1 else "HEAD")
    out: dict = {"source": f"3D Slicer {FOLDER} at {ref}", "lists": {}}
    for name in LISTS:
        data = _read(source, ref, name)
        categories = []
        for cat in data["SegmentationCodes"]["Category"]:
            if cat["CodeValue"] not in CATEGORIES:
                continue
            types = [{"code": _code(t), "modifiers": [_code(m) for m in t.get("Modifier", [])]} for t in cat.get("Type", [])]
            categories.append({"code": _code(cat), "types": types})
        out["lists"][data["SegmentationCategoryTypeContextName"]] = categories
    OUT.write_text(json.dumps(out, indent=0, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
