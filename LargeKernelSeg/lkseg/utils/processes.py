"""Processes as process trees, through psutil, for background jobs and the segmentation worker:
identity by pid *and* creation time (a reused pid is not ours), ending a whole tree (children found
recursively, so a launcher such as Slicer's PythonSlicer that runs the real interpreter as its child
is covered), and start options that hold on Windows (no process groups or SIGKILL needed; no console
window)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterable

import psutil

log = logging.getLogger(__name__)

CHILDREN: dict[int, subprocess.Popen] = {}  # supervisors started here (reaped when polled)
#: creation times are floats from the OS clock; two reads of one process agree far closer than this
_SAME_START_S = 0.05


def identity(pid: int | None = None) -> dict | None:
    """``{"pid", "created"}`` of a running process (this one by default), or None when there is none."""
    try:
        p = psutil.Process(pid or os.getpid())
        return {"pid": p.pid, "created": p.create_time()}
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return None


def _process(ident: dict | None) -> psutil.Process | None:
    """The live process ``ident`` names (a zombie, or another process under the same pid, is none)."""
    if not ident or not ident.get("pid"):
        return None
    pid = int(ident["pid"])
    child = CHILDREN.get(pid)
    if child is not None and child.poll() is not None:  # reap a supervisor we started
        CHILDREN.pop(pid, None)
        return None
    try:
        p = psutil.Process(pid)
        if ident.get("created") is not None and abs(p.create_time() - float(ident["created"])) > _SAME_START_S:
            return None
        if p.status() == psutil.STATUS_ZOMBIE:
            return None
        return p
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def alive(ident: dict | None) -> bool:
    return _process(ident) is not None


def pid_alive(pid: int | None) -> bool:
    """True when ``pid`` runs (a zombie counts as gone); prefer :func:`alive` with a creation time."""
    return alive({"pid": pid} if pid else None)


def tree(idents: Iterable[dict | None]) -> list[psutil.Process]:
    """The live processes named and all their descendants, each once."""
    found: dict[int, psutil.Process] = {}
    for ident in idents:
        p = _process(ident)
        if p is None:
            continue
        found[p.pid] = p
        try:
            for c in p.children(recursive=True):
                found.setdefault(c.pid, c)
        except psutil.NoSuchProcess:
            pass
    return list(found.values())


def end_tree(processes: list[psutil.Process], grace_s: float) -> list[psutil.Process]:
    """Terminate, wait ``grace_s``, kill what is left, wait again; returns the survivors (normally none)."""
    for p in processes:
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            pass
    _, left = psutil.wait_procs(processes, timeout=grace_s)
    for p in left:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    _, left = psutil.wait_procs(left, timeout=5.0)
    for pid in [pid for pid, c in CHILDREN.items() if c.poll() is not None]:
        CHILDREN.pop(pid, None)
    if left:
        log.warning("processes %s survived being killed", [p.pid for p in left])
    return left


def detached_options() -> dict:
    """Popen options for a process that must outlive its starter and open no window."""
    if sys.platform == "win32":
        return {"creationflags": subprocess.CREATE_NO_WINDOW | subprocess.CREATE_NEW_PROCESS_GROUP}
    return {"start_new_session": True}


def child_options() -> dict:
    """Popen options for a child process that opens no console window on Windows."""
    return {"creationflags": subprocess.CREATE_NO_WINDOW} if sys.platform == "win32" else {}


def child_env(**extra: str) -> dict[str, str]:
    """Environment for a ``python -m lkseg...`` child: this one's, with the folder holding *this* ``lkseg``
    first on the child's ``PYTHONPATH`` (inside Slicer the interpreter is PythonSlicer, which does not
    search the extension's folder by itself). Only the child's environment changes, never this process's."""
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and os.path.abspath(p) != here]
    return {**os.environ, "PYTHONPATH": os.pathsep.join([here, *parts]), **extra}
