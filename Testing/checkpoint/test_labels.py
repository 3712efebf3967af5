"""Label tables: built-in benchmark tables, validation, JSON round trip, lookup."""

import json

import pytest
from lkseg.checkpoint.labels import (
    AMOS,
    BTCV,
    FLARE21,
    Code,
    Label,
    LabelError,
    LabelTable,
    get_table,
)
from lkseg.errors import LkSegError

SCT_ORGAN = Code("SCT", "123037004", "Anatomical Structure")


@pytest.mark.parametrize("table,count", [(BTCV, 13), (AMOS, 15), (FLARE21, 4)])
def test_builtin_tables_are_consecutive_unique_and_coded(table, count):
    assert len(table) == count
    assert table.values == list(range(1, count + 1))
    assert table.num_classes == count + 1
    assert len(set(table.names)) == count
    for lab in table:
        assert lab.category == SCT_ORGAN
        assert all(0 <= c <= 255 for c in lab.color) and len(lab.color) == 3
    # all but AMOS's combined "prostate/uterus" carry a SNOMED CT type code
    assert sum(lab.type is not None for lab in table) >= count - 1
    assert all(lab.type.scheme == "SCT" and lab.type.value.isdigit() for lab in table if lab.type)


def test_published_orders_and_codes():
    assert BTCV.names[:3] == ["spleen", "right kidney", "left kidney"]
    assert BTCV.by_value(6).name == "liver" and BTCV.by_value(6).type.value == "10200004"
    assert BTCV.by_value(13).name == "left adrenal gland"
    rk, lk = BTCV.by_name("right kidney"), BTCV.by_name("left kidney")
    assert rk.type == lk.type == Code("SCT", "64033007", "Kidney")
    assert (rk.modifier.value, lk.modifier.value) == ("24028007", "7771000")
    assert AMOS.names[12:] == ["duodenum", "bladder", "prostate/uterus"]
    assert AMOS.by_value(9).type.value == "64131007"  # postcava = inferior vena cava
    assert FLARE21.names == ["liver", "kidney", "spleen", "pancreas"]


def test_lookup_by_name_is_forgiving_and_errors_are_clear():
    assert BTCV.by_name("Inferior_Vena-Cava").value == 9
    with pytest.raises(LabelError, match="no label named 'heart'"):
        BTCV.by_name("heart")
    with pytest.raises(LabelError, match="no label with value 14"):
        BTCV.by_value(14)
    assert 4 in FLARE21 and 5 not in FLARE21


def test_json_round_trip_through_a_file(tmp_path):
    path = tmp_path / "amos.json"
    path.write_text(AMOS.to_json())
    back = get_table(path)
    assert back == AMOS  # colours, codes, modifiers and name survive
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps(FLARE21.to_list()))
    t = get_table(str(plain))
    assert t.labels == FLARE21.labels and t.name == "plain"


def test_get_table_names_and_errors(tmp_path):
    assert get_table("BTCV") == BTCV and get_table("amos") == AMOS and get_table("Flare21") == FLARE21
    mine = get_table("btcv")
    mine.labels.pop()
    assert len(get_table("btcv")) == 13 and len(BTCV) == 13
    with pytest.raises(LkSegError, match="unknown label table 'lits'"):
        get_table("lits")
    with pytest.raises(LkSegError, match="does not exist"):
        get_table(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(LkSegError, match=str(bad.name)):
        get_table(bad)


@pytest.mark.parametrize("items,message", [
    ([{"value": 0, "name": "liver", "color": [1, 2, 3]}], "values must be > 0"),
    ([{"value": -2, "name": "liver", "color": [1, 2, 3]}], "values must be > 0"),
    ([{"value": 1, "name": "liver", "color": [1, 2, 3]}, {"value": 1, "name": "spleen", "color": [1, 2, 3]}],
     "value 1 is used twice"),
    ([{"value": 1, "name": "liver", "color": [1, 2, 3]}, {"value": 2, "name": "Liver", "color": [1, 2, 3]}],
     "used twice"),
    ([{"value": 1, "name": "liver", "color": [1, 2, 300]}], "0-255"),
    ([{"value": 1, "name": "liver", "color": [1, 2]}], "color"),
    ([{"value": 1.5, "name": "liver", "color": [1, 2, 3]}], "integer"),
    ([{"value": 1, "color": [1, 2, 3]}], "missing name"),
    ([{"value": 1, "name": "  ", "color": [1, 2, 3]}], "no name"),
    ([{"value": 1, "name": "liver", "type": {"meaning": "Liver"}}], "scheme"),
    ({"value": 1}, "expected a list"),
])
def test_from_list_validation(items, message):
    with pytest.raises(LabelError, match=message) as info:
        LabelTable.from_list(items, source="my_labels.json")
    assert "my_labels.json" in str(info.value)


def test_direct_construction_is_validated_and_same_as_ignores_colours():
    with pytest.raises(LabelError, match="colour"):
        LabelTable([Label(1, "liver", (0, 0, 256))])
    a = LabelTable([Label(1, "liver", (1, 2, 3)), Label(2, "spleen", (4, 5, 6))], name="a")
    b = LabelTable.from_list([{"value": 2, "name": "Spleen", "color": "#ff0000"},
                              {"value": 1, "name": "liver"}], name="b")
    assert b.by_value(2).color == (255, 0, 0)
    assert a.same_as(b) and b.same_as(a)
    assert not a.same_as(FLARE21)
    swapped = LabelTable([Label(1, "spleen", (1, 2, 3)), Label(2, "liver", (4, 5, 6))])
    renamed = LabelTable([Label(1, "liver", (1, 2, 3)), Label(2, "pancreas", (4, 5, 6))])
    assert not a.same_as(swapped) and not a.same_as(renamed)  # same values, other organs
    assert not a.same_as(LabelTable([Label(1, "liver", (1, 2, 3))]))  # an organ fewer
    sparse = LabelTable([Label(3, "kidney", (1, 1, 1)), Label(7, "pancreas", (2, 2, 2))])
    assert sparse.num_classes == 8
