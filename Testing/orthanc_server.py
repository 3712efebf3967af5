"""A real Orthanc DICOM server with its DICOMweb plugin, for the tests (Debian packages ``orthanc`` and
``orthanc-dicomweb``, which ``.ci/run`` installs).

:func:`running_orthanc` writes a configuration into a temporary folder (storage there too), starts
``Orthanc`` on a free HTTP port with remote access off (it answers only 127.0.0.1), the DICOM listener
off and HTTP basic authentication on, waits until it answers, yields its DICOMweb root URL and
stops it again. Orthanc has no option to bind one address; with ``RemoteAccessAllowed`` false it
refuses every client that is not local.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

PLUGIN_DIRS = (Path("/usr/share/orthanc/plugins"), Path("/usr/lib/orthanc/plugins"))


@dataclass
class Orthanc:
    rest: str  #: the REST root, http://127.0.0.1:PORT
    dicomweb: str  #: the DICOMweb root, REST root + /dicom-web
    auth: tuple[str, str]
    log: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _plugin() -> Path:
    for folder in PLUGIN_DIRS:
        found = sorted(folder.glob("libOrthancDicomWeb.so*"))
        if found:
            return found[0]
    pytest.skip("needs Orthanc's DICOMweb plugin (apt install orthanc-dicomweb)")


@contextmanager
def running_orthanc(folder: Path) -> Iterator[Orthanc]:
    binary = shutil.which("Orthanc") or ("/usr/sbin/Orthanc" if Path("/usr/sbin/Orthanc").exists() else None)
    if binary is None:
        pytest.skip("needs Orthanc (apt install orthanc orthanc-dicomweb)")
    port, auth = _free_port(), ("lkseg", "test-secret")
    storage = folder / "storage"
    storage.mkdir(parents=True)
    config = {"Name": "lkseg-test", "StorageDirectory": str(storage), "IndexDirectory": str(storage),
              "HttpPort": port, "DicomServerEnabled": False, "RemoteAccessAllowed": False,
              "AuthenticationEnabled": True, "RegisteredUsers": {auth[0]: auth[1]},
              "Plugins": [str(_plugin())], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
              "HttpTimeout": 60, "StableAge": 1}
    (folder / "orthanc.json").write_text(json.dumps(config))
    log = folder / "orthanc.log"
    with log.open("w") as out:
        proc = subprocess.Popen([binary, str(folder / "orthanc.json")], stdout=out, stderr=subprocess.STDOUT)
    rest = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"{rest}/system", auth=auth, timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Orthanc did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield Orthanc(rest=rest, dicomweb=f"{rest}/dicom-web", auth=auth, log=log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
