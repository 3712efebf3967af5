"""The long-lived segmentation worker: ``python -m lkseg.service.worker``.

It keeps the last loaded checkpoint (keyed by path, modification time, size and device) so the
second request on the same model costs no reload and no CUDA start-up, and serves requests
given as JSON lines on stdin, answering with JSON lines on stdout. The protocol is documented
in ``docs/worker_protocol.md``; the client is :class:`lkseg.service.client.WorkerClient`; the
volume files both sides exchange are in :mod:`lkseg.service.wire`.

Threads: the main thread reads stdin; one executor thread runs the requests one at a time. A
``cancel`` line sets the request's :class:`threading.Event` at once; the Segmenter checks it
between window batches, so a cancel stops within about a second. stdout carries the protocol
only: file descriptor 1 is moved to a private descriptor at start-up and fd 1 (and
``sys.stdout``) point at stderr, so stray prints from any library cannot corrupt the stream."""

from __future__ import annotations

import json
import logging
import os
import queue
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from lkseg.errors import Cancelled, LkSegError
from lkseg.service.wire import read_volume, write_volume

log = logging.getLogger("lkseg.worker")

#: seconds between the worker's heartbeat lines
HEARTBEAT_S = 1.0


class Worker:
    """Serves requests; ``out`` is the protocol stream (one JSON object per line)."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self._out_lock = threading.Lock()
        self._queue: queue.Queue[dict | None] = queue.Queue()
        self._events: dict[Any, threading.Event] = {}
        self._events_lock = threading.Lock()
        self._cache_key: tuple | None = None
        self._segmenter: Any = None
        self._thread = threading.Thread(target=self._serve, name="lkseg-worker-exec", daemon=True)

    # -- protocol -----------------------------------------------------------------------------
    def send(self, message: dict) -> None:
        line = json.dumps(message)
        with self._out_lock:
            self.out.write(line + "\n")
            self.out.flush()

    def _heartbeat(self) -> None:
        """A line every HEARTBEAT_S, so a client can tell a busy worker from a hung or stopped one."""
        while True:
            time.sleep(HEARTBEAT_S)
            try:
                self.send({"id": None, "event": "heartbeat"})
            except (OSError, ValueError):
                return

    def run(self, lines: IO[str]) -> int:
        """Read requests until ``shutdown`` or end of input (the client went away)."""
        self._thread.start()
        threading.Thread(target=self._heartbeat, name="lkseg-worker-heartbeat", daemon=True).start()
        for raw in lines:
            raw = raw.strip()
            if not raw:
                continue
            try:
                msg = json.loads(raw)
                if not isinstance(msg, dict):
                    raise ValueError("not a JSON object")
            except ValueError as exc:
                self.send({"id": None, "event": "error", "kind": "protocol", "message": f"bad request line: {exc}"})
                continue
            cmd = msg.get("cmd")
            if cmd == "segment":
                with self._events_lock:
                    self._events[msg.get("id")] = threading.Event()
                self._queue.put(msg)
            elif cmd == "cancel":
                self._cancel(msg.get("id"))
            elif cmd == "ping":
                self.send({"id": msg.get("id"), "event": "pong", "pid": os.getpid(),
                           "loaded": self._cache_key[0] if self._cache_key else None})
            elif cmd == "shutdown":
                break
            else:
                self.send({"id": msg.get("id"), "event": "error", "kind": "protocol",
                           "message": f"unknown cmd {cmd!r} (segment, cancel, ping, shutdown)"})
        self._cancel(None)
        self._queue.put(None)
        self._thread.join(timeout=5)
        return 0

    def _cancel(self, request_id: Any) -> None:
        """Set the cancel event of ``request_id`` (``None``: every pending request)."""
        with self._events_lock:
            targets = list(self._events.values()) if request_id is None else [self._events.get(request_id)]
        for event in targets:
            if event is not None:
                event.set()

    # -- execution ----------------------------------------------------------------------------
    def _serve(self) -> None:
        while True:
            msg = self._queue.get()
            if msg is None:
                return
            rid = msg.get("id")
            with self._events_lock:
                event = self._events.get(rid) or threading.Event()
            try:
                self.send(self._segment(msg, event))
            except Cancelled:
                self.send({"id": rid, "event": "cancelled"})
            except LkSegError as exc:
                self.send({"id": rid, "event": "error", "kind": "user", "message": str(exc)})
            except MemoryError as exc:
                self.send({"id": rid, "event": "error", "kind": "oom", "message": f"out of memory: {exc}"})
            except Exception as exc:  # noqa: BLE001 - reported to the client, details in the log
                log.exception("request %s failed", rid)
                self.send({"id": rid, "event": "error", "kind": "internal",
                           "message": f"{type(exc).__name__}: {exc}"})
            finally:
                with self._events_lock:
                    self._events.pop(rid, None)

    def _load(self, checkpoint: str, device: str) -> tuple[Any, bool, float]:
        """The cached Segmenter for (checkpoint file, device), loading it when it changed."""
        from lkseg.inference.segmenter import Segmenter

        path = Path(checkpoint).expanduser().resolve()
        try:
            st = path.stat()
        except OSError as exc:
            raise LkSegError(f"checkpoint {checkpoint} cannot be read ({exc.strerror}); choose an existing "
                             ".safetensors file") from None
        key = (str(path), st.st_mtime_ns, st.st_size, device)
        if key == self._cache_key and self._segmenter is not None:
            return self._segmenter, False, 0.0
        self._segmenter, self._cache_key = None, None  # free the old model before loading the next
        t0 = time.perf_counter()
        segmenter = Segmenter.from_checkpoint(path, device=device)
        self._segmenter, self._cache_key = segmenter, key
        return segmenter, True, time.perf_counter() - t0

    def _segment(self, msg: dict, event: threading.Event) -> dict:
        rid = msg.get("id")
        for field in ("checkpoint", "input", "output"):
            if not msg.get(field):
                raise LkSegError(f"segment request {rid!r} lacks {field!r}")
        options = dict(msg.get("options") or {})
        device = str(options.pop("device", "auto"))
        t_all = time.perf_counter()
        self.send({"id": rid, "event": "progress", "fraction": 0.0, "stage": "load"})
        segmenter, loaded, load_s = self._load(str(msg["checkpoint"]), device)
        if event.is_set():
            raise Cancelled()
        t0 = time.perf_counter()
        image = read_volume(msg["input"])
        read_s = time.perf_counter() - t0

        def progress(fraction: float, stage: str) -> None:
            self.send({"id": rid, "event": "progress", "fraction": float(fraction), "stage": stage})

        result = segmenter.segment(image, progress=progress, cancel=event,
                                   tta=bool(options.get("tta", False)),
                                   largest_component=_optional_bool(options.get("largest_component")))
        t0 = time.perf_counter()
        write_volume(result.labels, msg["output"])
        timings = {"load": load_s, "read_input": read_s, **result.timings,
                   "write_output": time.perf_counter() - t0, "worker_total": time.perf_counter() - t_all}
        return {"id": rid, "event": "done", "output": str(msg["output"]), "timings": timings,
                "loaded_model": loaded, "device": result.device, "notes": list(result.notes),
                "precision": result.precision, "windows": list(result.windows),
                "labels": result.table.to_list(), "table_name": getattr(result.table, "name", "")}


def _protocol_stream() -> IO[str]:
    """Move the real stdout to a private descriptor; fd 1 and ``sys.stdout`` go to stderr."""
    fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(fd, "w", buffering=1, encoding="utf-8")


def _optional_bool(value):
    """None (follow the model card) or the boolean the client sent."""
    return None if value is None else bool(value)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=os.environ.get("LKSEG_WORKER_LOG", "INFO"), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    out = _protocol_stream()
    log.info("lkseg worker %d ready", os.getpid())
    code = Worker(out).run(sys.stdin)
    log.info("lkseg worker %d exits", os.getpid())
    return code


if __name__ == "__main__":
    sys.exit(main())
