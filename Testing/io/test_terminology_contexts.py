"""Every ``.seg.nrrd`` terminology entry we write names a Slicer terminology list that holds its codes
(the lists' codes: Testing/Data/slicer_terminology/codes.json, extracted from Slicer v5.10.0)."""

from __future__ import annotations

import json

import pytest
from lkseg.checkpoint.labels import BUILTIN_TABLES
from lkseg.io.export import terminology_tag
from repo_data import DATA

LISTS = json.loads((DATA / "slicer_terminology" / "codes.json").read_text())["lists"]


def entries(context: str) -> set[tuple[str, str, str | None]]:
    out = set()
    for category in LISTS[context]:
        for typ in category["types"]:
            out.add((category["code"][1], typ["code"][1], None))
            out |= {(category["code"][1], typ["code"][1], m[1]) for m in typ["modifiers"]}
    return out


@pytest.mark.parametrize("table", sorted(BUILTIN_TABLES))
def test_each_label_names_a_list_that_holds_its_codes(table: str) -> None:
    for label in BUILTIN_TABLES[table].labels:
        tag = terminology_tag(label)
        if not tag:
            continue
        context = tag.split(":", 1)[1].split("~")[0]
        assert context in LISTS, (label.name, context)
        key = (label.category.value, label.type.value, label.modifier.value if label.modifier else None)
        assert key in entries(context), f"{table} {label.name}: {key} is not in {context}"
