"""The bundled models: each is installed with its sample, says on its card what the front ends say of
it (modality, licence, where its scores come from), and ``lkseg demo --model`` runs it.

The MR demo runs on CHAOS case 1, one of the MR model's 15 training cases: its Dice against the
case's manual labels is a regression guard on a seen case, not accuracy (the cross-validated
scores on the card are that)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from lkseg.app import resources
from lkseg.checkpoint.native import read_card
from lkseg.errors import LkSegError
from lkseg.evaluation.metrics import dice
from lkseg.io.imageio import read_image
from repo_data import DATA, REPO

MR = resources.bundled_model("mr")
ORGANS = ("liver", "right kidney", "left kidney", "spleen")


def test_every_bundled_model_is_installed_and_its_card_agrees_with_the_list():
    found = resources.bundled_models()
    assert [e.key for e, _ in found] == [e.key for e in resources.BUNDLED] == ["ct", "mr"]
    for entry, path in found:
        card = read_card(path)
        assert card.modality == entry.modality, entry.key
        assert resources.bundled(entry.sample) is not None, f"the sample of {entry.key} is missing"
        assert resources.bundled_entry(path) == entry
    assert found[0][1] == resources.default_model()  # the CT model stays the default


def test_the_mr_card_says_what_it_was_trained_on_its_licence_and_its_cross_validated_scores():
    card = read_card(resources.bundled(MR.model))
    prov = card.provenance
    assert card.modality.startswith("MR T2")
    assert [lab.name for lab in card.labels.labels] == list(ORGANS)
    assert all(lab.category and lab.type for lab in card.labels.labels)  # SNOMED codes, as the CT model
    assert [lab.modifier is not None for lab in card.labels.labels] == [False, True, True, False]  # laterality
    assert prov.training_data["licence"] == "CC BY-NC-SA 4.0" and "CC BY-NC-SA 4.0" in prov.notes
    assert prov.training_data["patients"] == 15 and prov.training_data["recipe"].startswith("scripts/train_mr_model.py")
    assert card.preprocessing.intensity["mode"] == "zscore" and list(card.preprocessing.spacing) == [3.0, 3.0, 7.7]
    m = prov.metrics
    assert "fold CV" in m["cv"] and set(m["cv_dice"]) == set(ORGANS)
    assert len(m["cv_per_case_dice"]) == 15  # every case scored once, by a model that never saw it
    per_case = np.array([[d[o] for o in ORGANS] for d in m["cv_per_case_dice"].values()], dtype=float)
    assert np.allclose(per_case.mean(0), [m["cv_dice"][o] for o in ORGANS], atol=1e-3)
    assert (REPO / "Resources" / "Models" / "mr_t2_model.LICENSE.md").is_file()


def test_an_unknown_bundled_model_is_named_with_the_choices():
    with pytest.raises(LkSegError, match=r"no bundled model 'brain'.*mr \(Abdominal T2 MR"):
        resources.bundled_model("brain")


def _demo(tmp_path, *extra):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "lkseg", "demo", "-o", str(out), "--device", "cpu", *extra],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    return proc, out


def test_demo_runs_the_mr_model_on_the_sample_mr(tmp_path):
    proc, out = _demo(tmp_path, "--model", "mr")
    assert proc.returncode == 0, proc.stderr
    assert "warning" not in proc.stderr  # an MR on the MR model: nothing to warn about
    labels = read_image(out / "sample_mr_t2_labels.nii.gz")
    ref = read_image(DATA / "chaos" / "label_1.nii.gz")
    assert labels.same_grid(ref, atol=1e-3)
    for value, name in enumerate(ORGANS, start=1):
        assert name in proc.stdout
        assert dice(labels.array == value, np.rint(ref.array) == value) > 0.85, name  # a training case: 0.94-0.97
    # right kidney on the patient's right: lower x in LPS than the left kidney
    lps = labels.ijk_to_lps()

    def x_of(value):
        k, j, i = np.nonzero(labels.array == value)
        return (lps @ np.stack([i, j, k, np.ones_like(i)]))[0].mean()

    assert x_of(2) < x_of(3)


def test_demo_warns_when_the_mr_model_is_given_a_ct(tmp_path):
    proc, _ = _demo(tmp_path, "--model", "mr", "--image", str(REPO / "Resources" / "Data" / "sample_ct.nii.gz"))
    assert proc.returncode == 0, proc.stderr
    assert "lkseg: warning:" in proc.stderr and "a CT needs a CT model" in proc.stderr
