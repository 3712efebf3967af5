"""``lkseg segment --from-dicomweb ... --to-dicomweb`` against a real Orthanc started by the test:
pull the bundled series, segment it, store the DICOM SEG back, and find it on the server."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
import requests
from lkseg.checkpoint.native import read_card
from lkseg.dicom import load_source_series
from lkseg.dicom.seg_read import read_dicom_seg
from lkseg.io.imageio import read_image
from orthanc_server import Orthanc, running_orthanc


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory, series_dirs: dict[str, Path]) -> Iterator[Orthanc]:
    """Orthanc holding the bundled series (uploaded through Orthanc's own REST API, not our code)."""
    with running_orthanc(tmp_path_factory.mktemp("orthanc")) as server:
        for f in sorted(series_dirs["axial"].iterdir()):
            requests.post(f"{server.rest}/instances", data=f.read_bytes(), auth=server.auth, timeout=30).raise_for_status()
        yield server


def lkseg(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LKSEG_DICOMWEB")}
    return subprocess.run([sys.executable, "-m", "lkseg", *args], check=False, capture_output=True, text=True, timeout=300,
                          env={**clean, **(env or {})})


def pull_args(server: Orthanc, series: Path, checkpoint: Path, out: Path) -> list[str]:
    source = load_source_series(series)
    return ["segment", "--from-dicomweb", server.dicomweb, "--study", source.study_uid, "--series",
            source.series_uid, "-m", str(checkpoint), "-o", str(out), "--device", "cpu"]


def seg_instances(server: Orthanc, study_uid: str) -> list[pydicom.Dataset]:
    found = requests.post(f"{server.rest}/tools/find", auth=server.auth, timeout=30, json={
        "Level": "Instance", "Query": {"StudyInstanceUID": study_uid, "Modality": "SEG"}}).json()
    return [pydicom.dcmread(io.BytesIO(requests.get(f"{server.rest}/instances/{i}/file", auth=server.auth,
                                                    timeout=30).content)) for i in found]


def test_round_trip_through_orthanc(orthanc: Orthanc, series_dirs: dict[str, Path], tmp_path: Path,
                                    ct_threshold_checkpoint: Path) -> None:
    series = series_dirs["axial"]
    config = tmp_path / "dicomweb.json"
    config.write_text(json.dumps({"servers": [{"url": orthanc.rest, "username": orthanc.auth[0],
                                               "password": orthanc.auth[1]}]}))
    config.chmod(0o600)
    proc = lkseg(*pull_args(orthanc, series, ct_threshold_checkpoint, tmp_path / "out"), "--to-dicomweb",
                 env={"LKSEG_DICOMWEB_CONFIG": str(config)})
    assert proc.returncode == 0, proc.stderr
    assert orthanc.auth[1] not in proc.stdout + proc.stderr
    source = load_source_series(series)
    (stored,) = seg_instances(orthanc, source.study_uid)
    path = tmp_path / "stored.dcm"
    stored.save_as(path)
    table = read_card(ct_threshold_checkpoint).labels
    grid = read_image(series)
    labels, _ = read_dicom_seg(path, source, grid, table)
    local = lkseg("segment", str(series), "-m", str(ct_threshold_checkpoint), "-o", str(tmp_path / "local.nii.gz"),
                  "--device", "cpu")
    assert local.returncode == 0, local.stderr
    expected = read_image(tmp_path / "local.nii.gz").array
    assert np.count_nonzero(expected) > 1000
    np.testing.assert_array_equal(labels.array, expected)
    assert stored.SOPInstanceUID == pydicom.dcmread(tmp_path / "out" / f"{source.series_uid}_seg.dcm").SOPInstanceUID


def test_server_problems_are_explained(orthanc: Orthanc, series_dirs: dict[str, Path], tmp_path: Path,
                                       ct_threshold_checkpoint: Path) -> None:
    args = pull_args(orthanc, series_dirs["axial"], ct_threshold_checkpoint, tmp_path / "out")
    cases = [
        ({"LKSEG_DICOMWEB_USER": "lkseg", "LKSEG_DICOMWEB_PASSWORD": "wrong"}, args, "refused"),
        ({}, args, "LKSEG_DICOMWEB_USER"),
        ({"LKSEG_DICOMWEB_USER": "lkseg", "LKSEG_DICOMWEB_PASSWORD": orthanc.auth[1]},
         [*args[:6], "1.2.3.4", *args[7:]], "not found"),
        ({}, [*args[:2], orthanc.dicomweb.replace("http://", "http://lkseg:pw@"), *args[3:]], "carries a user name"),
        ({}, [*args[:2], "http://127.0.0.1:9/dicom-web", *args[3:]], "could not reach"),
        ({}, [*args, "--format", "nii.gz", "--to-dicomweb"], "drop --format nii.gz"),
    ]
    for env, argv, message in cases:
        proc = lkseg(*argv, env=env)
        assert proc.returncode == 2, (argv, proc.stderr)
        assert message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / "out").exists()
