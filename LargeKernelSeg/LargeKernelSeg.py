"""LargeKernelSeg: one-click organ segmentation with large-kernel 3D CNNs in 3D Slicer.

The module only translates between Slicer nodes and ``lkseg`` calls. Segmentation runs in the
``lkseg`` worker process (``lkseg.service.client.WorkerClient``) driven from a Python thread; the
main thread polls it with a ``qt.QTimer`` and is the only one that touches Slicer. Slicer-free glue
is in ``LargeKernelSegLib`` (tested without Slicer). torch, MONAI and the rest are imported only
inside functions, after :meth:`LargeKernelSegLogic.ensureDependencies`.
"""

import logging
import os
import traceback
from typing import Annotated

import qt
import slicer
import vtk
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin

import LargeKernelSegLib as glue
from LargeKernelSegLib import install, mrml, session, selftest

DEVICES = ["auto", "cuda", "cpu"]


class LargeKernelSeg(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "LargeKernelSeg"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = []
        self.parent.contributors = ["LargeKernelSeg contributors"]
        self.parent.helpText = glue.HELP_TEXT
        self.parent.acknowledgementText = glue.ACKNOWLEDGEMENT_TEXT


@parameterNodeWrapper
class LargeKernelSegParameterNode:
    inputVolume: vtkMRMLScalarVolumeNode
    outputSegmentation: vtkMRMLSegmentationNode
    checkpointPath: str = ""
    device: Annotated[str, Choice(DEVICES)] = "auto"
    showSurfaces: bool = False
    exportFormat: Annotated[str, Choice(list(glue.EXPORT_FORMATS))] = "NIfTI"
    datasetFolder: str = ""
    fineTuneSteps: Annotated[int, WithinRange(0, 1000000)] = 500
    fineTuneMinutes: Annotated[int, WithinRange(0, 10080)] = 0
    fineTuneDevice: Annotated[str, Choice(DEVICES)] = "auto"
    jobDir: str = ""


class LargeKernelSegWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._guiTag = None

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/LargeKernelSeg.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = LargeKernelSegLogic()
        self.settings = glue.PanelSettings()
        self.segmentTimer = qt.QTimer()
        self.segmentTimer.setInterval(200)
        self.segmentTimer.connect("timeout()", self.onSegmentTimer)
        self.jobTimer = qt.QTimer()
        self.jobTimer.setInterval(2000)
        self.jobTimer.connect("timeout()", self.onJobTimer)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.applyButton.connect("clicked(bool)", self.onApply)
        self.ui.checkpointPathLineEdit.connect("currentPathChanged(QString)", self.onCheckpointChanged)
        self.ui.recentCheckpointsComboBox.connect("activated(int)", self.onRecentChosen)
        self.ui.editInSegmentEditorButton.connect("clicked(bool)", self.onEditInSegmentEditor)
        self.ui.datasetFolderPathLineEdit.connect("currentPathChanged(QString)", self.onDatasetFolderChanged)
        self.ui.exportToDatasetButton.connect("clicked(bool)", self.onExportToDataset)
        self.ui.exportFileButton.connect("clicked(bool)", self.onExportFile)
        self.ui.startFineTuneButton.connect("clicked(bool)", self.onStartFineTune)
        self.ui.cancelFineTuneButton.connect("clicked(bool)", self.onCancelFineTune)
        self.ui.loadResultButton.connect("clicked(bool)", self.onLoadResult)
        self.ui.datasetFolderPathLineEdit.currentPath = self.settings.dataset_folder()
        self.initializeParameterNode()
        self.refreshRecent()
        self.onCheckpointChanged(self.ui.checkpointPathLineEdit.currentPath)  # the default model's card

    def cleanup(self):
        self.segmentTimer.stop()
        self.jobTimer.stop()
        self.logic.close()
        self.removeObservers()

    def enter(self):
        self.initializeParameterNode()

    def exit(self):
        if self._parameterNode:  # the fine-tuning job keeps running; only stop mirroring the GUI
            self._parameterNode.disconnectGui(self._guiTag)
            self._guiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateButtons)

    def onSceneStartClose(self, caller, event):
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self):
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            self._parameterNode.inputVolume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
        if self._parameterNode.jobDir and not self.jobTimer.isActive():
            self.jobTimer.start()

    def setParameterNode(self, node):
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._guiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateButtons)
        self._parameterNode = node
        if node:
            self._guiTag = node.connectGui(self.ui)
            self.addObserver(node, vtk.vtkCommand.ModifiedEvent, self.updateButtons)
            self.ui.checkpointPathLineEdit.currentPath = node.checkpointPath
            self.updateButtons()

    def updateButtons(self, caller=None, event=None):
        p = self._parameterNode
        busy = self.logic.isRunning()
        self.ui.applyButton.text = "Cancel" if busy else "Segment"
        self.ui.applyButton.enabled = busy or bool(p and p.inputVolume)
        hasResult = bool(p and p.outputSegmentation and p.inputVolume)
        self.ui.editInSegmentEditorButton.enabled = hasResult
        self.ui.exportToDatasetButton.enabled = hasResult and not busy
        self.ui.exportFileButton.enabled = hasResult and not busy

    def showError(self, exc, label=None):
        logging.error("LargeKernelSeg: %s\n%s", exc, "".join(traceback.format_exception(exc)))
        (label or self.ui.statusLabel).text = glue.user_message(exc)

    def refreshRecent(self):
        combo = self.ui.recentCheckpointsComboBox
        combo.clear()
        combo.addItem("Bundled default model", "")
        for path in self.settings.recent_checkpoints():
            combo.addItem(os.path.basename(path), path)
            combo.setItemData(combo.count - 1, path, qt.Qt.ToolTipRole)

    def onRecentChosen(self, index):
        self.ui.checkpointPathLineEdit.currentPath = self.ui.recentCheckpointsComboBox.itemData(index) or ""

    def onCheckpointChanged(self, path):
        if self._parameterNode:
            self._parameterNode.checkpointPath = path
        try:
            card = self.logic.readCard(path) if glue.missing_modules() == [] else None
            self.ui.cardSummaryTextBrowser.plainText = glue.card_summary(card) if card else ""
        except Exception as exc:
            self.showError(exc)

    def onApply(self):
        if self.logic.isRunning():
            self.logic.cancel()
            self.ui.statusLabel.text = "Cancelling..."
            return
        p = self._parameterNode
        try:
            if not self.logic.ensureDependencies():
                self.ui.statusLabel.text = "Segmentation needs PyTorch and MONAI; nothing was installed."
                return
            checkpoint = self.logic.resolveCheckpoint(p.checkpointPath)
            self.logic.startSegmentation(p.inputVolume, checkpoint, p.device)
            if p.checkpointPath:
                self.settings.add_recent_checkpoint(checkpoint)
                self.refreshRecent()
        except Exception as exc:
            self.showError(exc)
            return
        self.ui.segmentProgressBar.visible = True
        self.ui.segmentProgressBar.value = 0
        self.ui.statusLabel.text = "Starting..."
        self.segmentTimer.start()
        self.updateButtons()

    def onSegmentTimer(self):
        state, fraction, stage = self.logic.task.poll()
        self.ui.segmentProgressBar.value = int(100 * fraction)
        self.ui.statusLabel.text = stage or "Segmenting..."
        if state == "running":
            return
        self.segmentTimer.stop()
        self.ui.segmentProgressBar.visible = False
        p = self._parameterNode
        try:
            result = self.logic.task.result()
            p.outputSegmentation = self.logic.showResult(p.inputVolume, result, p.outputSegmentation, p.showSurfaces)
            seconds = sum(getattr(result, "timings", {}).values())
            self.ui.statusLabel.text = f"Done: {len(glue.segment_specs(result.table))} organs on {result.device} in {seconds:.0f} s."
        except Exception as exc:
            if state == "cancelled":
                self.ui.statusLabel.text = glue.user_message(exc)
            else:
                self.showError(exc)
        self.updateButtons()

    def onEditInSegmentEditor(self):
        p = self._parameterNode
        slicer.util.selectModule("SegmentEditor")
        editor = slicer.util.getModuleWidget("SegmentEditor").editor
        editor.setSegmentationNode(p.outputSegmentation)
        editor.setSourceVolumeNode(p.inputVolume)

    def onDatasetFolderChanged(self, path):
        if path:
            self.settings.set_dataset_folder(path)
        if self._parameterNode:
            self._parameterNode.datasetFolder = path

    def onExportToDataset(self):
        p = self._parameterNode
        try:
            case_id = self.logic.exportToDataset(p.outputSegmentation, p.inputVolume, self.ui.datasetFolderPathLineEdit.currentPath)
            self.ui.statusLabel.text = f"Added case {case_id} to the dataset; it can be used for fine-tuning now."
        except Exception as exc:
            self.showError(exc)

    def onExportFile(self):
        p = self._parameterNode
        try:
            path = self.logic.exportToFile(p.outputSegmentation, p.inputVolume, self.ui.datasetFolderPathLineEdit.currentPath, p.exportFormat)
            self.ui.statusLabel.text = f"Saved {path}." if path else "Use the DICOM export dialog to finish."
        except Exception as exc:
            self.showError(exc)

    def onStartFineTune(self):
        p = self._parameterNode
        try:
            if not self.logic.ensureDependencies():
                return
            p.jobDir = str(self.logic.startFineTune(
                self.ui.datasetFolderPathLineEdit.currentPath, self.logic.resolveCheckpoint(p.checkpointPath),
                p.fineTuneSteps, p.fineTuneMinutes, p.fineTuneDevice))
            self.ui.fineTuneProgressBar.visible = True
            self.ui.fineTuneStatusLabel.text = "Starting..."
            self.ui.cancelFineTuneButton.enabled = True
            self.jobTimer.start()
        except Exception as exc:
            self.showError(exc, self.ui.fineTuneStatusLabel)

    def onJobTimer(self):
        p = self._parameterNode
        if not p or not p.jobDir:
            return
        try:
            view = self.logic.jobView(p.jobDir)
        except Exception as exc:
            self.jobTimer.stop()
            self.showError(exc, self.ui.fineTuneStatusLabel)
            return
        self.ui.fineTuneStatusLabel.text = view.text
        self.ui.fineTuneProgressBar.visible = True
        self.ui.fineTuneProgressBar.maximum = 0 if view.fraction is None else 100  # 0: busy indicator
        self.ui.fineTuneProgressBar.value = int(100 * (view.fraction or 0))
        curve = os.path.join(p.jobDir, "curves.png")
        if os.path.isfile(curve):
            self.ui.curveLabel.setPixmap(qt.QPixmap(curve).scaledToWidth(320, qt.Qt.SmoothTransformation))
        self.ui.cancelFineTuneButton.enabled = not view.finished
        self.ui.loadResultButton.enabled = bool(view.best)
        if view.finished:
            self.jobTimer.stop()

    def onCancelFineTune(self):
        try:
            self.logic.cancelFineTune(self._parameterNode.jobDir)
        except Exception as exc:
            self.showError(exc, self.ui.fineTuneStatusLabel)

    def onLoadResult(self):
        view = self.logic.jobView(self._parameterNode.jobDir)
        if view.best:
            self.ui.checkpointPathLineEdit.currentPath = view.best
            self.settings.add_recent_checkpoint(view.best)
            self.refreshRecent()


class LargeKernelSegLogic(ScriptedLoadableModuleLogic):
    """Volume node -> lkseg Image -> worker -> segmentation node; export and fine-tuning jobs.

    The MRML conversions are in ``LargeKernelSegLib.mrml``, the Slicer-free work (worker, exports,
    jobs) in ``LargeKernelSegLib.session``; this class joins them for the widget.
    """

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        self.session = session.SegmentationSession()
        # child processes (worker, training jobs) run sys.executable (PythonSlicer) and must find lkseg
        os.environ["PYTHONPATH"] = glue.pythonpath_with(glue.lkseg_parent(), os.environ.get("PYTHONPATH"))

    @property
    def task(self):
        return self.session.task

    @property
    def card(self):
        return self.session.card

    def getParameterNode(self):
        return LargeKernelSegParameterNode(super().getParameterNode())

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

    def startSegmentation(self, volumeNode, checkpoint, device="auto"):
        """Segment ``volumeNode`` in the worker process, from a background thread; returns the task to poll."""
        if self.isRunning():
            raise RuntimeError("a segmentation is already running")
        return self.session.start(self.volumeToImage(volumeNode), checkpoint, device)

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
            dialog = slicer.qSlicerDICOMExportDialog()
            dialog.setMRMLScene(slicer.mrmlScene)
            shNode = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer.mrmlScene)
            dialog.execDialog(shNode.GetItemByDataNode(segmentationNode))
            return None
        return session.export_to_file(folder, volumeNode.GetName(), fmt, lambda: self.correctedCase(segmentationNode, volumeNode))

    def startFineTune(self, datasetFolder, checkpoint, steps, minutes, device):
        """Start a detached fine-tuning job in ``<dataset>/jobs/``; returns its folder (it outlives the panel)."""
        return session.start_fine_tune(datasetFolder, checkpoint, steps, minutes, device)

    def jobView(self, jobDir):
        return session.fine_tune_view(jobDir)

    def cancelFineTune(self, jobDir):
        session.cancel_fine_tune(jobDir)


class LargeKernelSegTest(selftest.PanelSelfTest, ScriptedLoadableModuleTest):
    """The panel's flow on a small synthetic volume with the bundled default model (what ctest runs)."""

    def newLogic(self):
        return LargeKernelSegLogic()
