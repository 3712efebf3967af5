"""LargeKernelSeg: one-click organ segmentation with large-kernel 3D CNNs in 3D Slicer.

The module only translates between Slicer nodes and ``lkseg`` calls. Segmentation runs in the
``lkseg`` worker process (``lkseg.service.client.WorkerClient``) driven from a Python thread; the
main thread polls it with a ``qt.QTimer`` and is the only one that touches Slicer. Slicer-free glue
is in ``LargeKernelSegLib`` (tested without Slicer), the logic in ``LargeKernelSegLib.logic``. torch,
MONAI and the rest are imported only inside functions, after :meth:`LargeKernelSegLogic.ensureDependencies`.
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
from LargeKernelSegLib import logic, resources, selftest
from LargeKernelSegLib.logbuffer import LogBuffer
from LargeKernelSegLib.panel import control_states

try:
    from slicer.i18n import tr as _
except ImportError:  # Slicer before 5.4 has no translation helpers: the English text
    def _(text):
        return text

DEVICES = ["auto", "cuda", "cpu"]
log = logging.getLogger("LargeKernelSeg")


class LargeKernelSeg(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("LargeKernelSeg")
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = []
        self.parent.contributors = ["LargeKernelSeg contributors"]
        self.parent.helpText = _(glue.HELP_TEXT) + glue.HELP_LINK
        self.parent.acknowledgementText = glue.ACKNOWLEDGEMENT_TEXT
        # the bundled sample and our terminology, once Slicer has started (Sample Data, Terminologies exist)
        slicer.app.connect("startupCompleted()", resources.register_all)


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
        self.logBuffer = LogBuffer().attach()
        self.segmentTimer = self._timer(200, self.onSegmentTimer)
        self.jobTimer = self._timer(2000, self.onJobTimer)
        self.cardTimer = self._timer(400, self.showCard)  # the model card is read once typing pauses
        self.cardTimer.singleShot = True
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
        self.showCard()  # the default model's card

    def _timer(self, interval, slot):
        timer = qt.QTimer()
        timer.setInterval(interval)
        timer.connect("timeout()", slot)
        return timer

    def cleanup(self):
        for timer in (self.segmentTimer, self.jobTimer, self.cardTimer):
            timer.stop()
        self.logic.close()
        self.logBuffer.detach()
        self.removeObservers()

    def enter(self):
        self.initializeParameterNode()

    def exit(self):
        if self._parameterNode:  # the fine-tuning job keeps running; only stop mirroring the GUI
            self._parameterNode.disconnectGui(self._guiTag)
            self._guiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateButtons)

    def onSceneStartClose(self, caller, event):
        if self.logic.isRunning():
            self.logic.sceneClosing()
            self.setStatus(_("The scene is closing: stopping the segmentation..."))
        if self.logic.jobRunning():
            self.setStatus(_("The scene was closed; the fine-tuning job keeps running and is still shown here."),
                           self.ui.fineTuneStatusLabel)
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self):
        self.setParameterNode(self.logic.getParameterNode())
        p = self._parameterNode
        if not p.inputVolume:
            p.inputVolume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
        if self.logic.jobDir:  # the job this panel runs outlives scenes: the new scene records it too
            p.jobDir = self.logic.jobDir
        elif p.jobDir:  # a saved scene names a job: follow it
            self.logic.jobDir = p.jobDir
        if self.logic.jobDir and not self.jobTimer.isActive():
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
        view = self.logic.lastJobView
        states = control_states(busy, self.logic.jobRunning(), bool(p and p.inputVolume),
                                bool(p and p.outputSegmentation and p.inputVolume), bool(view and view.best))
        for name, enabled in states.items():
            getattr(self.ui, name).enabled = enabled
        self.ui.applyButton.text = _("Cancel") if busy else _("Segment")

    def setStatus(self, text, label=None):
        (label or self.ui.statusLabel).text = text
        self.logBuffer.note(text)
        self.flushLog()

    def flushLog(self):
        for line in self.logBuffer.drain():
            self.ui.logTextEdit.appendPlainText(line)

    def showError(self, exc, label=None):
        log.error("LargeKernelSeg: %s\n%s", exc, "".join(traceback.format_exception(exc)))
        self.setStatus(glue.user_message(exc), label)

    def refreshRecent(self):
        combo = self.ui.recentCheckpointsComboBox
        combo.clear()
        for text, path in self.logic.session.model_choices(self.settings.recent_checkpoints()):
            combo.addItem(text, path)
            combo.setItemData(combo.count - 1, path, qt.Qt.ToolTipRole)

    def onRecentChosen(self, index):
        self.ui.checkpointPathLineEdit.currentPath = self.ui.recentCheckpointsComboBox.itemData(index) or ""

    def onCheckpointChanged(self, path):
        if self._parameterNode:
            self._parameterNode.checkpointPath = path
        self.cardTimer.start()  # restarted by each keystroke: one read when typing pauses

    def showCard(self):
        path = self.ui.checkpointPathLineEdit.currentPath
        if glue.missing_modules() != []:  # the card needs safetensors: read it once installed
            self.ui.cardSummaryTextBrowser.plainText = ""
            return
        self.ui.cardSummaryTextBrowser.plainText = glue.card_text(path, self.logic.readCard, glue.user_message)[0]

    def onApply(self):
        if self.logic.isRunning():
            self.logic.cancel()
            self.setStatus(_("Cancelling..."))
            return
        p = self._parameterNode
        try:
            if not self.logic.ensureDependencies():
                self.setStatus(_("Segmentation needs PyTorch and MONAI; nothing was installed."))
                return
            checkpoint = self.logic.resolveCheckpoint(p.checkpointPath)
            self.logic.startSegmentation(p.inputVolume, checkpoint, p.device, p.outputSegmentation)
            if p.checkpointPath:
                self.settings.add_recent_checkpoint(checkpoint)
                self.refreshRecent()
        except Exception as exc:
            self.showError(exc)
            return
        self.ui.segmentProgressBar.visible = True
        self.ui.segmentProgressBar.value = 0
        self.setStatus(_("Starting..."))
        self.segmentTimer.start()
        self.updateButtons()

    def onSegmentTimer(self):
        state, fraction, stage = self.logic.task.poll()
        self.ui.segmentProgressBar.value = int(100 * fraction)
        self.ui.statusLabel.text = stage or _("Segmenting...")
        self.flushLog()
        if state == "running":
            return
        self.segmentTimer.stop()
        self.ui.segmentProgressBar.visible = False
        try:
            node, note = self.logic.finishSegmentation(self._parameterNode.showSurfaces if self._parameterNode else False)
            result = self.logic.task.result()
            if self._parameterNode:
                self._parameterNode.outputSegmentation = node
            seconds = sum(getattr(result, "timings", {}).values())
            done = _("Done: {count} organs on {device} in {seconds} s.").format(
                count=len(glue.segment_specs(result.table)), device=result.device, seconds=f"{seconds:.0f}")
            warnings = " ".join(_("Warning: {note}.").format(note=n) for n in getattr(result, "notes", None) or [])
            self.setStatus(f"{done} {note} {warnings}".strip())
        except Exception as exc:
            if glue.is_cancelled(exc):
                self.setStatus(glue.user_message(exc))
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
            self.setStatus(_("Added case {case} to the dataset; it can be used for fine-tuning now.").format(case=case_id))
        except Exception as exc:
            self.showError(exc)

    def onExportFile(self):
        p = self._parameterNode
        try:
            path = self.logic.exportToFile(p.outputSegmentation, p.inputVolume, self.ui.datasetFolderPathLineEdit.currentPath, p.exportFormat)
            self.setStatus(_("Saved {path}.").format(path=path) if path else _("Use the DICOM export dialog to finish."))
        except Exception as exc:
            self.showError(exc)

    def onStartFineTune(self):
        p = self._parameterNode
        try:
            if not self.logic.ensureDependencies():
                return
            p.jobDir = self.logic.startFineTune(
                self.ui.datasetFolderPathLineEdit.currentPath, self.logic.resolveCheckpoint(p.checkpointPath),
                p.fineTuneSteps, p.fineTuneMinutes, p.fineTuneDevice)
            self.ui.fineTuneProgressBar.visible = True
            self.setStatus(_("Starting..."), self.ui.fineTuneStatusLabel)
            self.jobTimer.start()
        except Exception as exc:
            self.showError(exc, self.ui.fineTuneStatusLabel)
        self.updateButtons()

    def onJobTimer(self):
        if not self.logic.jobDir:
            self.jobTimer.stop()
            return
        try:
            view = self.logic.jobView()
        except Exception as exc:
            self.jobTimer.stop()
            self.showError(exc, self.ui.fineTuneStatusLabel)
            return
        self.ui.fineTuneStatusLabel.text = view.text
        self.ui.fineTuneProgressBar.visible = True
        self.ui.fineTuneProgressBar.maximum = 0 if view.fraction is None else 100  # 0: busy indicator
        self.ui.fineTuneProgressBar.value = int(100 * (view.fraction or 0))
        curve = os.path.join(self.logic.jobDir, "curves.png")
        if os.path.isfile(curve):
            self.ui.curveLabel.setPixmap(qt.QPixmap(curve).scaledToWidth(320, qt.Qt.SmoothTransformation))
        if view.finished:
            self.jobTimer.stop()
            self.setStatus(view.text, self.ui.fineTuneStatusLabel)
        self.flushLog()
        self.updateButtons()

    def onCancelFineTune(self):
        try:
            self.logic.cancelFineTune()
            self.setStatus(_("Cancelling the fine-tuning job..."), self.ui.fineTuneStatusLabel)
        except Exception as exc:
            self.showError(exc, self.ui.fineTuneStatusLabel)

    def onLoadResult(self):
        view = self.logic.jobView()
        if view.best:
            self.ui.checkpointPathLineEdit.currentPath = view.best
            self.settings.add_recent_checkpoint(view.best)
            self.refreshRecent()


class LargeKernelSegLogic(logic.PanelLogic, ScriptedLoadableModuleLogic):
    """Volume node -> lkseg Image -> worker -> segmentation node; export and fine-tuning jobs
    (``LargeKernelSegLib.logic.PanelLogic``)."""

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        logic.PanelLogic.__init__(self)

    def getParameterNode(self):
        return LargeKernelSegParameterNode(super().getParameterNode())


class LargeKernelSegTest(selftest.PanelSelfTest, ScriptedLoadableModuleTest):
    """The panel's flow on a small synthetic volume with the bundled default model (what ctest runs)."""

    def newLogic(self):
        return LargeKernelSegLogic()
