"""Where the real data the tests carry lies (Testing/Data/SOURCE.md says where it comes from).
Import from here, not from conftest: there is more than one conftest.py under Testing/."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "Testing" / "Data"
SAMPLE_CT = REPO / "Resources" / "Data" / "sample_ct.nii.gz"
DEFAULT_MODEL = REPO / "Resources" / "Models" / "default_model.safetensors"
