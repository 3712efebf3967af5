"""Client of the segmentation worker (``python -m lkseg.service.worker``), for the Slicer module and the viewer.

:class:`WorkerClient` starts the worker lazily, sends one request at a time as a JSON line
(protocol: ``docs/worker_protocol.md``) and moves volumes through uncompressed ``.npz`` files in
a private temporary folder. ``segment()`` blocks (GUIs call it from a thread) and calls
``progress(fraction, stage)`` from the calling thread; ``cancel()`` may be called from any
thread. If the worker dies (crash, out of memory, kill), the call raises :class:`WorkerError`
with the tail of the worker's log and the next call starts a fresh worker.

Every blocking call has a deadline: the worker sends a heartbeat every second, and a worker silent
for ``heartbeat_timeout_s`` (hung, or stopped with SIGSTOP) is ended and reported; a request may have
a ``request_timeout_s``; after ``cancel()`` a worker that does not confirm within ``cancel_grace_s``
is ended, so the call returns and the client stays usable. The worker is ended as a process tree
(a launcher in front of the interpreter included), and temporary folders left by a client that was
killed are removed by the next client.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lkseg.errors import Cancelled, LkSegError
from lkseg.io.image import Image
from lkseg.utils.processes import child_env, child_options, end_tree, identity, tree

log = logging.getLogger(__name__)

Progress = Callable[[float, str], None]

_EOF = object()


#: temporary folders are named <prefix><pid of the client>-<random>
TMP_PREFIX = "lkseg-worker-"


def remove_stale_folders(root: str | os.PathLike | None = None) -> list[Path]:
    """Remove temporary folders of clients that no longer run (killed before they could clean up)."""
    import psutil

    removed = []
    for folder in Path(root or tempfile.gettempdir()).glob(f"{TMP_PREFIX}*-*"):
        pid = folder.name[len(TMP_PREFIX):].split("-", 1)[0]
        if folder.is_dir() and pid.isdigit() and not psutil.pid_exists(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


class WorkerError(LkSegError):
    """The worker process failed (died, or an internal error); the next request starts a fresh one."""


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class WorkerClient:
    """A long-lived ``lkseg.service.worker`` process, started on first use (``device`` is the default device)."""

    def __init__(self, device: str = "auto", python: str = sys.executable, heartbeat_timeout_s: float = 15.0,
                 request_timeout_s: float | None = None, cancel_grace_s: float = 3.0) -> None:
        self.device = device
        self.python = python
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self.request_timeout_s = request_timeout_s
        self.cancel_grace_s = cancel_grace_s
        remove_stale_folders()
        self.tmpdir = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}-"))
        self.log_path = self.tmpdir / "worker.log"
        self.last_reply: dict | None = None  # the last "done" event (timings, loaded_model, ...)
        self._proc: subprocess.Popen | None = None
        self._proc_ident: dict | None = None
        self._lines: queue.Queue = queue.Queue()
        self._write_lock = threading.Lock()
        self._request_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._current: str | None = None
        self._cancel_local = threading.Event()  # set by cancel() for the current request
        self._closed = False

    # -- process ------------------------------------------------------------------------------
    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.alive else None

    def start(self) -> None:
        """Start the worker now (``segment`` does it when needed)."""
        if self._closed:
            raise WorkerError("this WorkerClient was closed; create a new one")
        if self.alive:
            return
        self._reap()
        env = child_env(PYTHONUNBUFFERED="1")
        with open(self.log_path, "ab") as logfile:
            self._proc = subprocess.Popen(
                [self.python, "-m", "lkseg.service.worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=logfile, env=env, text=True, encoding="utf-8", bufsize=1, **child_options())
        self._proc_ident = identity(self._proc.pid)
        self._lines = queue.Queue()
        threading.Thread(target=self._read, args=(self._proc, self._lines), name="lkseg-worker-reader",
                         daemon=True).start()
        log.info("started lkseg worker %d (log %s)", self._proc.pid, self.log_path)

    @staticmethod
    def _read(proc: subprocess.Popen, lines: queue.Queue) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            try:
                lines.put(json.loads(raw))
            except ValueError:
                log.warning("lkseg worker: unexpected output %r", raw[:200])
        lines.put(_EOF)

    def _send(self, message: dict) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None:
            raise WorkerError("the worker is not running")
        with self._write_lock:
            try:
                proc.stdin.write(json.dumps(message) + "\n")
                proc.stdin.flush()
            except (BrokenPipeError, OSError, ValueError) as exc:
                raise WorkerError(self._died_message(f"could not send to the worker ({exc})")) from None

    def _died_message(self, what: str) -> str:
        code = None
        if self._proc is not None:
            try:
                code = self._proc.wait(timeout=2)  # stdout closed: the process is (nearly) gone
            except subprocess.TimeoutExpired:
                pass
        how = "" if code is None else (f" (killed by signal {-code}, exit code {code})" if code < 0
                                       else f" (exit code {code})")
        tail = log_tail(self.log_path)
        return (f"{what}{how}; the next request starts a fresh worker. Worker log {self.log_path}"
                + (f":\n{tail}" if tail else ""))

    def _next_message(self, timeout: float, if_dead: str) -> dict | None:
        """The worker's next event, None after ``timeout`` s of silence; a worker whose output
        ended is reaped and reported as :class:`WorkerError` saying ``if_dead``."""
        try:
            msg = self._lines.get(timeout=timeout)
        except queue.Empty:
            return None
        if msg is _EOF:
            message = self._died_message(if_dead)
            self._reap()
            raise WorkerError(message)
        return msg

    def _reap(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:  # the whole tree: under a launcher the interpreter is its child
            end_tree(tree([self._proc_ident]) or [], grace_s=0.5)
            if proc.poll() is None:
                proc.kill()
        # only now close the pipes: closing stdout while the reader thread is blocked reading it would
        # wait for that read, i.e. forever with a suspended worker
        for stream in (proc.stdin, proc.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover
            log.warning("lkseg worker %d did not exit", proc.pid)

    # -- requests -----------------------------------------------------------------------------
    def ping(self, timeout: float = 30.0) -> dict:
        """Start the worker if needed and wait for its ``pong`` (pid, loaded checkpoint)."""
        with self._request_lock:
            self.start()
            self._send({"cmd": "ping", "id": "ping"})
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                msg = self._next_message(0.2, "the worker stopped")
                if msg is None:
                    continue
                if msg.get("event") == "pong":
                    return msg
            raise WorkerError(f"the worker did not answer a ping within {timeout:g} s")

    def segment(self, image: Image, checkpoint: str | os.PathLike, progress: Progress | None = None,
                cancel_event: Any = None, **options: Any) -> Any:
        """Segment ``image`` with ``checkpoint`` in the worker -> :class:`lkseg.inference.SegmentationResult`.

        ``options``: ``device`` (default: the client's), ``tta``, ``largest_component``.
        Raises :class:`~lkseg.errors.Cancelled` when cancelled (``cancel()`` or ``cancel_event``),
        :class:`WorkerError` when the worker died, :class:`~lkseg.errors.LkSegError` for a user error.
        """
        from lkseg.checkpoint.labels import LabelTable
        from lkseg.inference.segmenter import SegmentationResult
        from lkseg.service.wire import read_npz, write_npz

        if not isinstance(image, Image):
            raise LkSegError(f"WorkerClient.segment() needs an lkseg.io.image.Image, got {type(image).__name__}")
        options = {"device": options.pop("device", self.device), **options}
        with self._request_lock:
            self.start()
            rid = f"r{next(self._ids)}"
            self._cancel_local = threading.Event()
            src, dst = self.tmpdir / f"{rid}-input.npz", self.tmpdir / f"{rid}-labels.npz"
            t0 = time.perf_counter()
            try:
                write_npz(image, src)
                send_s = time.perf_counter() - t0
                self._current = rid
                self._send({"id": rid, "cmd": "segment", "checkpoint": str(Path(checkpoint).expanduser().resolve()),
                            "input": str(src), "output": str(dst), "options": options})
                reply = self._wait(rid, progress, cancel_event)
                t1 = time.perf_counter()
                labels = read_npz(dst)
                timings = dict(reply.get("timings") or {})
                timings["transfer"] = send_s + (time.perf_counter() - t1)
                table = LabelTable.from_list(reply.get("labels") or [], name=reply.get("table_name", ""),
                                             source=f"worker reply for {checkpoint}")
                self.last_reply = reply
                return SegmentationResult(labels, table, timings, str(reply.get("device", "")),
                                          list(reply.get("notes") or []), str(reply.get("precision", "fp32")),
                                          tuple(reply.get("windows") or (0, 0)))
            finally:
                self._current = None
                for path in (src, dst):
                    path.unlink(missing_ok=True)

    def _wait(self, rid: str, progress: Progress | None, cancel_event: Any) -> dict:
        cancel_sent: float | None = None
        started = last_heard = time.monotonic()
        while True:
            now = time.monotonic()
            wanted = self._cancel_local.is_set() or (cancel_event is not None and cancel_event.is_set())
            if wanted and cancel_sent is None:  # also covers a cancel() that came before the request was sent
                self._send({"cmd": "cancel", "id": rid})
                cancel_sent = now
            if cancel_sent is not None and now - cancel_sent > self.cancel_grace_s:
                self._end_worker(f"did not confirm the cancel within {self.cancel_grace_s:g} s")
                raise Cancelled()
            if now - last_heard > self.heartbeat_timeout_s:
                self._end_worker(f"sent nothing for {self.heartbeat_timeout_s:g} s (hung or suspended)")
                raise WorkerError(f"the segmentation worker stopped answering for {self.heartbeat_timeout_s:g} s "
                                  "(hung or suspended); it was ended and the next request starts a fresh one "
                                  f"(log: {self.log_path})")
            if self.request_timeout_s is not None and now - started > self.request_timeout_s:
                self._end_worker(f"took longer than {self.request_timeout_s:g} s")
                raise WorkerError(f"the segmentation took longer than {self.request_timeout_s:g} s and was stopped; "
                                  "the next request starts a fresh worker")
            msg = self._next_message(0.1, "the segmentation worker died during the request")
            if msg is None:
                continue
            last_heard = time.monotonic()
            if msg.get("id") != rid:
                log.debug("lkseg worker: ignoring %s", msg)
                continue
            event = msg.get("event")
            if event == "progress":
                if progress is not None:
                    progress(float(msg.get("fraction", 0.0)), str(msg.get("stage", "")))
            elif event == "done":
                return msg
            elif event == "cancelled":
                raise Cancelled()
            elif event == "error":
                text = str(msg.get("message", "unknown error"))
                if msg.get("kind") == "user":
                    raise LkSegError(text)
                raise WorkerError(f"the segmentation worker failed: {text} (log: {self.log_path})")

    def cancel(self) -> None:
        """Cancel the running request (thread-safe, returns at once; does nothing when idle). The thread
        waiting in :meth:`segment` sends the cancel and, if the worker does not confirm it within
        ``cancel_grace_s``, ends the worker, so that call raises :class:`Cancelled` soon in any case."""
        self._cancel_local.set()

    def _end_worker(self, why: str) -> None:
        log.warning("lkseg worker %s %s; ending it", self.pid, why)
        self._reap()

    def segment_async(self, image: Image, checkpoint: str | os.PathLike, on_done: Callable[[Any], None],
                      on_error: Callable[[BaseException], None], progress: Progress | None = None,
                      **options: Any) -> threading.Thread:
        """Run :meth:`segment` in a daemon thread; ``on_done(result)`` or ``on_error(exc)`` from that thread."""
        def run() -> None:
            try:
                result = self.segment(image, checkpoint, progress=progress, **options)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                on_error(exc)
            else:
                on_done(result)

        thread = threading.Thread(target=run, name="lkseg-segment", daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        """Ask the worker to exit (killed after 5 s) and remove the temporary folder."""
        if self._closed:
            return
        self.cancel()
        proc = self._proc
        # the whole tree, found while the starter still lives: under a launcher (PythonSlicer) the worker
        # is the launcher's child, which outlives a launcher that exits or is killed first
        descendants = [p for p in tree([self._proc_ident]) if p.pid != (proc.pid if proc else None)]
        if proc is not None and proc.poll() is None:
            try:
                with self._write_lock:
                    assert proc.stdin is not None
                    proc.stdin.write(json.dumps({"cmd": "shutdown"}) + "\n")
                    proc.stdin.flush()
                proc.wait(timeout=5)
            except (OSError, ValueError, subprocess.TimeoutExpired):
                pass
        end_tree([p for p in descendants if p.is_running()], grace_s=2.0)  # before _reap closes the pipes
        self._reap()
        self._closed = True
        shutil.rmtree(self.tmpdir, ignore_errors=True)

    def __enter__(self) -> "WorkerClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort at interpreter exit
        try:
            self.close()
        except Exception:
            pass
