"""The long-lived segmentation worker and its client. :mod:`.worker` is the server
(``python -m lkseg.service.worker``), :mod:`.client` the :class:`WorkerClient` front ends use,
:mod:`.wire` the volume files both exchange; neither side imports the other.

Stable entry points: ``lkseg.service.WorkerClient``, ``lkseg.service.WorkerError``.
"""

from lkseg.service.client import WorkerClient, WorkerError

__all__ = ["WorkerClient", "WorkerError"]
