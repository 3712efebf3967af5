"""One segmentation run as the panel sees it: the volume and output node it was started with, and where
its result goes when it ends, however the selection changed (or the scene closed) in between.

Calls Slicer (the scene); imported only by ``LargeKernelSeg.py``.
"""

import slicer

from . import mrml

SCENE_CLOSED = ("The scene was closed while segmenting, so the segmentation was stopped and nothing was added. "
                "Load the volume again and press Segment.")


class SegmentationRun:
    """The nodes a run started with. The node objects are kept (not only their IDs, which a new scene
    reuses), so a result is never attached to another volume that took the same ID."""

    def __init__(self, volumeNode, outputNode=None):
        self.volumeNode = volumeNode
        self.volumeName = volumeNode.GetName()
        self.outputNode = outputNode
        self.sceneClosed = False

    def finish(self, result, card, showSurfaces=False):
        """Write ``result`` for the segmented volume; returns (segmentation node, note for the status line).

        The chosen output node is reused only when that loses nothing (``mrml.result_target``); a
        removed volume or a closed scene raises ``LkSegError`` with what to do.
        """
        from lkseg.errors import LkSegError

        scene = slicer.mrmlScene
        if self.sceneClosed:
            raise LkSegError(SCENE_CLOSED)
        if not scene.IsNodePresent(self.volumeNode):
            raise LkSegError(f"The volume '{self.volumeName}' was removed while it was being segmented, so its "
                             "result was not added. Load it again and press Segment.")
        output = self.outputNode if self.outputNode is not None and scene.IsNodePresent(self.outputNode) else None
        target, note = mrml.result_target(output)
        node = mrml.show_result(self.volumeNode, result, card, target, showSurfaces)
        return node, note
