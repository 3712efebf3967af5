"""The worker under a launcher that, like Slicer's PythonSlicer, runs the real interpreter as its child:
``close()`` ends the whole tree even when the launcher exits first, and the child finds ``lkseg``
through its own environment only (the parent's ``PYTHONPATH`` is never changed)."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

import psutil

from lkseg.service.client import WorkerClient
from lkseg.utils.processes import child_env

# a launcher that forwards its stdin to the real interpreter (its child) and, like a launcher that does not
# wait for what it started, exits as soon as it has forwarded a shutdown request
LAUNCHER = '''
import os, subprocess, sys, threading
child = subprocess.Popen([{python!r}] + sys.argv[1:], stdin=subprocess.PIPE, text=True)
for line in sys.stdin:
    child.stdin.write(line)
    child.stdin.flush()
    if "shutdown" in line:
        os._exit(0)
child.wait()
'''


def _launcher(tmp_path):
    script = tmp_path / "launcher.py"
    script.write_text(LAUNCHER.format(python=sys.executable))
    launcher = tmp_path / "PythonSlicer"
    launcher.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{script}" "$@"\n')
    launcher.chmod(0o755)
    return str(launcher)


def test_close_ends_the_interpreter_the_launcher_started(tmp_path):
    client = WorkerClient(device="cpu", python=_launcher(tmp_path))
    before = os.environ.get("PYTHONPATH")
    pong = client.ping(timeout=60)
    assert os.environ.get("PYTHONPATH") == before  # only the child's environment carries lkseg's folder
    worker = psutil.Process(int(pong["pid"]))
    assert worker.pid != client.pid and worker.parent().pid == client.pid  # the interpreter is the launcher's child
    worker.send_signal(signal.SIGSTOP)  # hung: it will not read the shutdown request
    try:
        closing = threading.Thread(target=client.close, daemon=True)
        closing.start()
        closing.join(30)
        assert not closing.is_alive(), "close() hung on the worker the launcher left behind"
        deadline = time.monotonic() + 10
        while worker.is_running() and worker.status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not worker.is_running() or worker.status() == psutil.STATUS_ZOMBIE, "the worker outlived close()"
    finally:
        if worker.is_running():
            worker.kill()


def test_child_env_puts_this_lkseg_first_once(monkeypatch):
    import lkseg

    here = os.path.dirname(os.path.dirname(os.path.abspath(lkseg.__file__)))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(["/elsewhere", here, "/other"]))
    env = child_env(EXTRA="1")
    assert env["PYTHONPATH"].split(os.pathsep) == [here, "/elsewhere", "/other"]
    assert env["EXTRA"] == "1" and os.environ["PYTHONPATH"].startswith("/elsewhere")
