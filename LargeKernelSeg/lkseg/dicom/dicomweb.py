"""Pulling a series from a DICOMweb server (WADO-RS) and storing results back (STOW-RS), with dicomweb-client.

Credentials never come from the command line (where they land in shell history, process lists
and logs): from ``LKSEG_DICOMWEB_TOKEN`` (a bearer token) or ``LKSEG_DICOMWEB_USER`` +
``LKSEG_DICOMWEB_PASSWORD``, else from a JSON config file (``LKSEG_DICOMWEB_CONFIG``, default
``~/.config/lkseg/dicomweb.json``)::

    {"servers": [{"url": "https://pacs.example.org/dicom-web", "username": "me", "password": "..."}]}

The entry whose ``url`` is the longest prefix of the server URL is used. A URL carrying
``user:password@`` is refused.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

import pydicom

from lkseg.errors import LkSegError

log = logging.getLogger(__name__)

#: ask for the instances as stored (any transfer syntax): the server need not transcode
_AS_STORED = (("application/dicom", "*"),)


class DicomWebError(LkSegError):
    """A DICOMweb server could not be reached, refused us, or lacks what was asked for."""


def config_path() -> Path:
    return Path(os.environ.get("LKSEG_DICOMWEB_CONFIG") or Path.home() / ".config" / "lkseg" / "dicomweb.json")


def credentials(url: str) -> dict[str, str]:
    """``{"token": ...}``, ``{"username": ..., "password": ...}`` or ``{}`` for ``url`` (see the module doc)."""
    if urlsplit(url).username or urlsplit(url).password:
        raise DicomWebError(f"the DICOMweb URL carries a user name or password; remove it from the URL and set "
                            f"LKSEG_DICOMWEB_USER and LKSEG_DICOMWEB_PASSWORD (or a token, or {config_path()}) instead")
    if os.environ.get("LKSEG_DICOMWEB_TOKEN"):
        return {"token": os.environ["LKSEG_DICOMWEB_TOKEN"]}
    if os.environ.get("LKSEG_DICOMWEB_USER"):
        return {"username": os.environ["LKSEG_DICOMWEB_USER"], "password": os.environ.get("LKSEG_DICOMWEB_PASSWORD", "")}
    path = config_path()
    if not path.is_file():
        return {}
    try:
        servers = json.loads(path.read_text(encoding="utf-8")).get("servers", [])
    except (OSError, ValueError, AttributeError) as exc:
        raise DicomWebError(f"{path}: could not be read as the DICOMweb config ({exc}); see `lkseg segment --help`")
    if path.stat().st_mode & (stat.S_IRGRP | stat.S_IROTH):
        log.warning("%s holds passwords and is readable by other users; chmod 600 it", path)
    matches = [s for s in servers if isinstance(s, dict) and url.rstrip("/").startswith(str(s.get("url", "")).rstrip("/"))
               and s.get("url")]
    if not matches:
        return {}
    best = max(matches, key=lambda s: len(str(s["url"])))
    return {k: str(best[k]) for k in ("token", "username", "password") if k in best}


def client(url: str):  # -> dicomweb_client.DICOMwebClient
    """A DICOMweb client for ``url`` with the credentials :func:`credentials` finds."""
    import requests
    from dicomweb_client import DICOMwebClient

    if urlsplit(url).scheme not in ("http", "https"):
        raise DicomWebError(f"{url}: a DICOMweb URL starts with http:// or https://")
    found = credentials(url)
    session = requests.Session()
    if "token" in found:
        session.headers["Authorization"] = f"Bearer {found['token']}"
    elif "username" in found:
        session.auth = (found["username"], found.get("password", ""))
    web = DICOMwebClient(url=url, session=session, timeout=60)
    # dicomweb-client retries every failure 5 times over ~30 s; an unreachable server should say so in seconds
    web.set_http_retry_params(retry=True, max_attempts=3, wait_exponential_multiplier=500)
    return web


def _explain(exc: Exception, url: str, what: str) -> DicomWebError:
    import requests

    if isinstance(exc, requests.exceptions.HTTPError) and exc.response is not None:
        code = exc.response.status_code
        if code in (401, 403):
            return DicomWebError(f"{url} refused {what} (HTTP {code}); set LKSEG_DICOMWEB_USER and "
                                 f"LKSEG_DICOMWEB_PASSWORD (or LKSEG_DICOMWEB_TOKEN, or {config_path()})")
        if code == 404:
            return DicomWebError(f"{url}: {what}: not found (HTTP 404); check the study and series UIDs and the URL "
                                 "(it ends at the DICOMweb root, e.g. .../dicom-web)")
        return DicomWebError(f"{url}: {what} failed (HTTP {code}: {exc.response.reason})")
    if isinstance(exc, requests.exceptions.RequestException):
        return DicomWebError(f"could not reach the DICOMweb server at {url} ({type(exc).__name__}); check the URL "
                             "and that the server is running")
    return DicomWebError(f"{url}: {what} failed: {exc}")


def pull_series(url: str, study_uid: str, series_uid: str, folder: str | Path) -> Path:
    """Download every instance of a series into ``folder`` (created); returns it."""
    folder = Path(folder)
    try:
        datasets = client(url).retrieve_series(study_uid, series_uid, media_types=_AS_STORED)
    except DicomWebError:
        raise
    except Exception as exc:
        raise _explain(exc, url, f"retrieving series {series_uid}") from exc
    if not datasets:
        raise DicomWebError(f"{url}: series {series_uid} of study {study_uid} holds no instances")
    folder.mkdir(parents=True, exist_ok=True)
    for index, ds in enumerate(datasets):
        ds.save_as(folder / f"{index:05d}.dcm", enforce_file_format=True)
    log.info("pulled %d instances of %s into %s", len(datasets), series_uid, folder)
    return folder


def store(url: str, paths: Sequence[str | Path]) -> None:
    """Store DICOM files on the server (STOW-RS)."""
    datasets = [pydicom.dcmread(p) for p in paths]
    try:
        client(url).store_instances(datasets)
    except DicomWebError:
        raise
    except Exception as exc:
        raise _explain(exc, url, "storing the result") from exc
