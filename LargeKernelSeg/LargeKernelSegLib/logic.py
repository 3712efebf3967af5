"""The module's logic (``LargeKernelSegLogic`` mixes it in): volume node -> ``lkseg`` Image -> worker ->
segmentation node, exports and fine-tuning jobs, and the bookkeeping that keeps a run's result with the
volume it segmented and one fine-tuning job at a time.

The MRML conversions are in :mod:`.mrml`, the Slicer-free work (worker, exports, jobs) in :mod:`.session`;
this class joins them. Calls Slicer; imported only by ``LargeKernelSeg.py``.
"""

import logging

import slicer

from . import install, mrml, runs, session
from .dicomseg import dicom_seg_problem

log = logging.getLogger("LargeKernelSeg")


def slicer_version():
    """(major, minor) of the running Slicer."""
    return int(slicer.app.majorVersion), int(slicer.app.minorVersion)


class PanelLogic:
    """What ``LargeKernelSegLogic`` does; ``getParameterNode()`` comes from the class it is mixed into."""

    def __init__(self):
        self.session = session.SegmentationSession()
        self.run = None  # the running segmentation's runs.SegmentationRun
        self.jobDir = ""  # the fine-tuning job this panel started or shows; outlives scene closes
        self.lastJobView = None

    @property
    def task(self):
        return self.session.task

    @property
    def card(self):
        return self.session.card

    def ensureDependencies(self, ask=True):
        """Install missing packages after asking (torch through the PyTorch extension); True if all present."""
        return install.ensure_dependencies(ask)

    resolveCheckpoint = staticmethod(session.SegmentationSession.resolve_checkpoint)

    def readCard(self, path):
        return self.session.read_card(path)

    def isRunning(self):
        return self.session.is_running()

    def volumeToImage(self, volumeNode):
        return mrml.volume_to_image(volumeNode)

    def startSegmentation(self, volumeNode, checkpoint, device="auto", outputNode=None):
        """Segment ``volumeNode`` in the worker process, from a background thread; returns the task to poll.
        The result goes to this volume (and ``outputNode``, when that loses nothing) whatever is selected
        when it ends: :meth:`finishSegmentation`."""
        if self.isRunning():
            raise RuntimeError("a segmentation is already running")
        task = self.session.start(self.volumeToImage(volumeNode), checkpoint, device)
        self.run = runs.SegmentationRun(volumeNode, outputNode)
        return task

    def finishSegmentation(self, showSurfaces=False):
        """(segmentation node, note) of the finished run; raises its error (``Cancelled``, a closed scene...)."""
        run, self.run = self.run, None
        if run is None:
            raise RuntimeError("no segmentation was started")
        if run.sceneClosed:  # the volume went with the scene: say so, whatever the worker answered
            from lkseg.errors import LkSegError
            raise LkSegError(runs.SCENE_CLOSED)
        return run.finish(self.task.result(), self.card, showSurfaces)

    def sceneClosing(self):
        """The scene is about to close: stop a running segmentation (its volume goes away); a fine-tuning
        job keeps running and stays this logic's job."""
        if self.run is not None and self.isRunning():
            self.run.sceneClosed = True
            self.cancel()

    def cancel(self):
        self.session.cancel()

    def close(self):
        self.session.close()

    def showResult(self, volumeNode, result, segmentationNode=None, showSurfaces=False):
        """Write a ``SegmentationResult`` into a segmentation node with the card's names, colours and codes."""
        return mrml.show_result(volumeNode, result, self.card, segmentationNode, showSurfaces)

    def segmentationToLabels(self, segmentationNode, volumeNode, table=None):
        """(volume Image, label Image) from the (edited) segmentation on the volume's grid."""
        return mrml.segmentation_to_labels(segmentationNode, volumeNode, table or self.segmentationTable(segmentationNode))

    def segmentationTable(self, segmentationNode):
        """The label table a result node was made with (else the selected model's)."""
        return mrml.stored_table(segmentationNode) or self.readCard(self.getParameterNode().checkpointPath).labels

    def correctedCase(self, segmentationNode, volumeNode):
        """(volume Image, label Image, label table) of an edited result, for export."""
        table = self.segmentationTable(segmentationNode)
        return (*self.segmentationToLabels(segmentationNode, volumeNode, table), table)

    def exportToDataset(self, segmentationNode, volumeNode, folder):
        """Add the volume and its corrected labels to the local dataset in ``folder``; returns the case id."""
        return session.export_to_dataset(folder, volumeNode.GetName(), lambda: self.correctedCase(segmentationNode, volumeNode))

    def exportToFile(self, segmentationNode, volumeNode, folder, fmt):
        """Write the labels as NIfTI or .seg.nrrd to ``<folder>/exports``; DICOM SEG opens Slicer's DICOM export."""
        if fmt == "DICOM SEG":
            problem = dicom_seg_problem(slicer_version(), getattr(slicer.modules, "dicomPlugins", {}))
            if problem:
                from lkseg.errors import LkSegError
                raise LkSegError(problem)
            dialog = slicer.qSlicerDICOMExportDialog()
            dialog.setMRMLScene(slicer.mrmlScene)
            shNode = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer.mrmlScene)
            dialog.execDialog(shNode.GetItemByDataNode(segmentationNode))
            return None
        return session.export_to_file(folder, volumeNode.GetName(), fmt, lambda: self.correctedCase(segmentationNode, volumeNode))

    def startFineTune(self, datasetFolder, checkpoint, steps, minutes, device):
        """Start a detached fine-tuning job in ``<dataset>/jobs/``; returns its folder (it outlives the panel).
        Refused while this panel's previous job still runs: one job at a time, and none forgotten."""
        if self.jobRunning(refresh=True):
            from lkseg.errors import LkSegError
            raise LkSegError(f"A fine-tuning job is still running ({self.jobDir}). Cancel it or wait until it "
                             "finishes before starting another.")
        self.jobDir, self.lastJobView = str(session.start_fine_tune(datasetFolder, checkpoint, steps, minutes, device)), None
        return self.jobDir

    def jobView(self, jobDir=None):
        view = session.fine_tune_view(jobDir or self.jobDir)
        if not jobDir or jobDir == self.jobDir:
            self.lastJobView = view
        return view

    def jobRunning(self, refresh=False):
        """True while this panel's job has not finished (``refresh``: read its folder now, else the last view).
        A job folder that can no longer be read (deleted, moved) holds no job to wait for."""
        if not self.jobDir:
            return False
        if refresh or self.lastJobView is None:
            try:
                self.jobView()
            except Exception as exc:  # noqa: BLE001 - reported, then the folder is let go
                log.warning("LargeKernelSeg: the job folder %s cannot be read (%s); it is no longer followed", self.jobDir, exc)
                self.jobDir, self.lastJobView = "", None
                return False
        return not self.lastJobView.finished

    def cancelFineTune(self, jobDir=None):
        session.cancel_fine_tune(jobDir or self.jobDir)
