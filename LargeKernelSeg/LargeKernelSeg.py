"""LargeKernelSeg: one-click organ segmentation with large-kernel 3D CNNs in 3D Slicer.

The module only translates between Slicer nodes and ``lkseg`` calls. Segmentation runs in the
``lkseg`` worker process (``lkseg.worker_client.WorkerClient``) driven from a Python thread; the
main thread polls it with a ``qt.QTimer`` and is the only one that touches Slicer. Slicer-free glue
is in ``LargeKernelSegLib`` (tested without Slicer). torch, MONAI and the rest are imported only
inside functions, after :meth:`LargeKernelSegLogic.ensureDependencies`.
"""

import json
import logging
import os
import tempfile
import time
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

DEVICES = ["auto", "cuda", "cpu"]
VALUES_ATTRIBUTE = "LargeKernelSeg.SegmentValues"  # node attribute: JSON {segment id: label value}
TABLE_ATTRIBUTE = "LargeKernelSeg.LabelTable"  # node attribute: the model's label table (JSON)


class LargeKernelSeg(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "LargeKernelSeg"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = []
        self.parent.contributors = ["LargeKernelSeg contributors"]
        self.parent.helpText = (
            "Segments abdominal organs in the selected CT volume with a large-kernel 3D network "
            "(3D UX-Net, RepUX-Net, 3D DeformUX-Net or MedNeXt). Pick a volume and a model file "
            "(or keep the bundled default), press Segment, correct the result in Segment Editor, "
            "add the corrected case to a local dataset and fine-tune the model on it. "
            "See <a href='https://github.com/LargeKernelSeg/SlicerLargeKernelSeg'>the documentation</a>.")
        self.parent.acknowledgementText = (
            "Networks: H. H. Lee et al., 3D UX-Net: A Large Kernel Volumetric ConvNet Modernizing "
            "Hierarchical Transformer for Medical Image Segmentation, ICLR 2023; H. H. Lee et al., "
            "Scaling Up 3D Kernels with Bayesian Frequency Re-parameterization for Medical Image "
            "Segmentation (RepUX-Net), MICCAI 2023; H. H. Lee et al., DeformUX-Net: Exploring a 3D "
            "Foundation Backbone for Medical Image Segmentation with Depthwise Deformable Convolution, "
            "2023; S. Roy et al., MedNeXt: Transformer-driven Scaling of ConvNets for Medical Image "
            "Segmentation, MICCAI 2023. Built on PyTorch, MONAI and SimpleITK.")


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
    """Volume node -> lkseg Image -> worker -> segmentation node; export and fine-tuning jobs."""

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        self._client = None
        self.task = None
        self.card = None  # model card of the running / last segmentation
        # child processes (worker, training jobs) run sys.executable (PythonSlicer) and must find lkseg
        os.environ["PYTHONPATH"] = glue.pythonpath_with(glue.lkseg_parent(), os.environ.get("PYTHONPATH"))

    def getParameterNode(self):
        return LargeKernelSegParameterNode(super().getParameterNode())

    def ensureDependencies(self, ask=True):
        """Install missing packages after asking (torch through the PyTorch extension); True if all present."""
        missing = glue.missing_modules()
        if not missing:
            return True
        if ask and not slicer.util.confirmOkCancelDisplay(glue.install_prompt(missing)):
            return False
        if "torch" in missing:
            try:
                import PyTorchUtils
            except ModuleNotFoundError:
                from lkseg.errors import LkSegError
                raise LkSegError("PyTorch is missing: install the 'PyTorch' extension from the Extensions Manager, "
                                 "restart Slicer and try again.") from None
            if PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False, torchVersionRequirement=">=2.1") is None:
                return False
        requirements = glue.pip_requirements(missing)
        if requirements:
            slicer.util.pip_install(requirements)
        import importlib
        importlib.invalidate_caches()
        return not glue.missing_modules()

    @staticmethod
    def resolveCheckpoint(path):
        """The chosen checkpoint, or the bundled default when none is chosen."""
        if path:
            return os.path.abspath(path)
        from lkseg import resources
        default = resources.default_model()
        if default is None:
            from lkseg.errors import LkSegError
            raise LkSegError("No model file is chosen and this installation has no bundled default model: choose a model file.")
        return str(default)

    def readCard(self, path):
        from lkseg.checkpoint import read_card
        return read_card(self.resolveCheckpoint(path))

    def isRunning(self):
        return self.task is not None and self.task.running

    def volumeToImage(self, volumeNode):
        ijkToRas = vtk.vtkMatrix4x4()
        volumeNode.GetIJKToRASMatrix(ijkToRas)
        return glue.image_from_volume_arrays(slicer.util.arrayFromVolume(volumeNode), ijkToRas)

    def startSegmentation(self, volumeNode, checkpoint, device="auto"):
        """Segment ``volumeNode`` in the worker process, from a background thread; returns the task to poll."""
        if self.isRunning():
            raise RuntimeError("a segmentation is already running")
        self.card = self.readCard(checkpoint)  # a bad model file fails here, before any work starts
        image = self.volumeToImage(volumeNode)
        if self._client is None:  # one long-lived worker: the second run reuses the loaded model
            from lkseg.worker_client import WorkerClient
            self._client = WorkerClient(device=device)
        client = self._client
        self.task = glue.BackgroundTask(  # the thread only talks to the worker, never to Slicer
            lambda progress, cancel: client.segment(image, checkpoint, progress=progress, cancel_event=cancel,
                                                    device=device))
        return self.task.start()

    def cancel(self):
        if self.task is not None:
            self.task.cancel()
        if self._client is not None:
            try:
                self._client.cancel()
            except Exception:
                logging.exception("LargeKernelSeg: cancelling the worker failed")

    def close(self):
        if self._client is not None:
            try:
                self._client.close()
            except Exception:
                logging.exception("LargeKernelSeg: closing the worker failed")
        self._client = None

    def showResult(self, volumeNode, result, segmentationNode=None, showSurfaces=False):
        """Write a ``SegmentationResult`` into a segmentation node with the card's names, colours and codes."""
        specs = glue.segment_specs(result.table)
        name = glue.segmentation_name(volumeNode.GetName(), self.card)
        if segmentationNode is None:
            segmentationNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
        segmentationNode.GetSegmentation().RemoveAllSegments()
        segmentationNode.CreateDefaultDisplayNodes()
        segmentationNode.SetReferenceImageGeometryParameterFromVolumeNode(volumeNode)
        segmentationNode.SetAndObserveTransformNodeID(volumeNode.GetTransformNodeID())
        imageData, ijkToRas = glue.labels_to_vtk_image(result.labels)
        labelNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "__LargeKernelSeg_labels__")
        try:
            labelNode.SetIJKToRASMatrix(ijkToRas)
            labelNode.SetAndObserveImageData(imageData)
            labelNode.SetAndObserveTransformNodeID(volumeNode.GetTransformNodeID())
            ids = vtk.vtkStringArray()
            for segmentId in glue.segment_id_list(specs):
                ids.InsertNextValue(segmentId)
            if not slicer.modules.segmentations.logic().ImportLabelmapToSegmentationNode(labelNode, segmentationNode, ids):
                raise RuntimeError("importing the label map into the segmentation failed")
        finally:
            slicer.mrmlScene.RemoveNode(labelNode)
        segmentation = segmentationNode.GetSegmentation()
        for spec in specs:
            segment = segmentation.GetSegment(spec.segment_id)
            segment.SetName(spec.name)
            segment.SetColor(*spec.color)
            if spec.terminology:
                segment.SetTag("TerminologyEntry", spec.terminology)  # vtkSegment::GetTerminologyEntryTagName()
        segmentationNode.SetAttribute(VALUES_ATTRIBUTE, json.dumps({s.segment_id: s.value for s in specs}))
        segmentationNode.SetAttribute(TABLE_ATTRIBUTE, glue.table_to_text(result.table))
        shNode = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer.mrmlScene)
        study = shNode.GetItemParent(shNode.GetItemByDataNode(volumeNode))
        shNode.SetItemParent(shNode.GetItemByDataNode(segmentationNode), study)
        if showSurfaces:
            segmentationNode.CreateClosedSurfaceRepresentation()
        slicer.util.setSliceViewerLayers(background=volumeNode)
        return segmentationNode

    def segmentationToLabels(self, segmentationNode, volumeNode, table=None):
        """(volume Image, label Image) from the (edited) segmentation on the volume's grid."""
        table = table or self.segmentationTable(segmentationNode)
        image = self.volumeToImage(volumeNode)
        values = json.loads(segmentationNode.GetAttribute(VALUES_ATTRIBUTE) or "{}")
        segmentation, masks, skipped = segmentationNode.GetSegmentation(), [], []
        for index in range(segmentation.GetNumberOfSegments()):
            segmentId = segmentation.GetNthSegmentID(index)
            name = segmentation.GetSegment(segmentId).GetName()
            value = glue.label_value_for_segment(name, str(values.get(segmentId, "")), table)
            if value is None:
                skipped.append(name)
                continue
            masks.append((value, slicer.util.arrayFromSegmentBinaryLabelmap(segmentationNode, segmentId, volumeNode)))
        if skipped:
            logging.warning("LargeKernelSeg: segments not in the model's labels were not exported: %s", ", ".join(skipped))
        return image, image.with_array(glue.compose_label_map(masks, image.array.shape))

    def segmentationTable(self, segmentationNode):
        """The label table a result node was made with (else the selected model's)."""
        text = segmentationNode.GetAttribute(TABLE_ATTRIBUTE)
        return glue.table_from_text(text) if text else self.readCard(self.getParameterNode().checkpointPath).labels

    def exportToDataset(self, segmentationNode, volumeNode, folder):
        """Add the volume and its corrected labels to the local dataset in ``folder``; returns the case id."""
        from lkseg.dataset import LocalDataset
        from lkseg.errors import LkSegError
        if not folder:
            raise LkSegError("Choose a dataset folder first (Export section).")
        table = self.segmentationTable(segmentationNode)
        image, labels = self.segmentationToLabels(segmentationNode, volumeNode, table)
        dataset = LocalDataset.open_or_create(folder, table)
        return dataset.add_case(image, labels, table, case_id=glue.sanitize_case_id(volumeNode.GetName()), map_by_name=True)

    def exportToFile(self, segmentationNode, volumeNode, folder, fmt):
        """Write the labels as NIfTI or .seg.nrrd to ``<folder>/exports``; DICOM SEG opens Slicer's DICOM export."""
        if fmt == "DICOM SEG":
            dialog = slicer.qSlicerDICOMExportDialog()
            dialog.setMRMLScene(slicer.mrmlScene)
            shNode = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer.mrmlScene)
            dialog.execDialog(shNode.GetItemByDataNode(segmentationNode))
            return None
        from lkseg import export
        from lkseg.errors import LkSegError
        if not folder:
            raise LkSegError("Choose a dataset folder first: exported files go to its 'exports' folder.")
        table = self.segmentationTable(segmentationNode)
        _, labels = self.segmentationToLabels(segmentationNode, volumeNode, table)
        folder = os.path.join(folder, "exports")
        os.makedirs(folder, exist_ok=True)
        path = glue.export_path(folder, volumeNode.GetName(), fmt)
        export.write_labels(labels, table, path)
        return path

    def startFineTune(self, datasetFolder, checkpoint, steps, minutes, device):
        """Start a detached fine-tuning job in ``<dataset>/jobs/``; returns its folder (it outlives the panel)."""
        from lkseg import jobs
        from lkseg.errors import LkSegError
        if not datasetFolder:
            raise LkSegError("Choose the dataset folder with your corrected cases first (Export section).")
        out = glue.new_job_dir(datasetFolder)
        return jobs.start_job(glue.fine_tune_argv(datasetFolder, checkpoint, out, steps, minutes, device), out=out)

    def jobView(self, jobDir):
        from lkseg import jobs
        return glue.job_view(jobs.job_status(jobDir), glue.read_progress(jobDir), glue.job_total_steps(jobDir))

    def cancelFineTune(self, jobDir):
        from lkseg import jobs
        jobs.cancel_job(jobDir)


class LargeKernelSegTest(ScriptedLoadableModuleTest):
    """The panel's flow on a small synthetic volume with the bundled default model (what ctest runs)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_SegmentExport()
        if slicer.util.mainWindow():  # the generic no-main-window tests cannot show the panel
            self.setUp()
            self.test_Panel()

    def syntheticVolume(self):
        import numpy as np
        array = np.random.default_rng(0).normal(40, 20, (40, 48, 48)).astype(np.int16)
        array[10:30, 12:36, 12:30] = 60
        ijkToRas = np.array([[-0.9, 0, 0, 10], [0, -0.9, 0, 20], [0, 0, 2.5, -30], [0, 0, 0, 1]])
        return array, slicer.util.addVolumeFromArray(array, ijkToRas, name="Synthetic CT")

    def test_Panel(self):
        """Click through the panel: Segment (with progress), the result node, Edit in Segment Editor."""
        slicer.util.selectModule("LargeKernelSeg")
        widget = slicer.util.getModuleWidget("LargeKernelSeg")
        _, volume = self.syntheticVolume()
        widget._parameterNode.inputVolume = volume
        widget._parameterNode.device = "cpu"
        widget.ui.applyButton.click()
        self.assertEqual(widget.ui.applyButton.text, "Cancel")
        while widget.segmentTimer.isActive():
            slicer.app.processEvents()
            time.sleep(0.05)
        self.assertTrue(widget.ui.statusLabel.text.startswith("Done"), widget.ui.statusLabel.text)
        seg = widget._parameterNode.outputSegmentation
        self.assertIsNotNone(seg)
        self.assertTrue(widget.ui.exportToDatasetButton.enabled)
        widget.ui.editInSegmentEditorButton.click()
        editor = slicer.util.getModuleWidget("SegmentEditor").editor
        self.assertEqual(editor.segmentationNodeID(), seg.GetID())
        self.assertEqual(editor.sourceVolumeNodeID(), volume.GetID())

    def test_SegmentExport(self):
        import numpy as np
        logic = LargeKernelSegLogic()
        self.assertTrue(logic.ensureDependencies(ask=False))
        array, volume = self.syntheticVolume()
        checkpoint = logic.resolveCheckpoint("")
        card = logic.readCard("")
        task = logic.startSegmentation(volume, checkpoint, "cpu")
        while logic.isRunning():
            slicer.app.processEvents()
            time.sleep(0.05)
        self.assertEqual(task.poll()[0], "done")
        result = task.result()
        self.assertEqual(result.labels.array.shape, array.shape)
        seg = logic.showResult(volume, result, None, showSurfaces=True)
        segmentation = seg.GetSegmentation()
        names = [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]
        self.assertEqual(names, [s.name for s in glue.segment_specs(card)])
        self.assertEqual(segmentation.GetNthSegment(0).GetTerminology(), glue.segment_specs(card)[0].terminology)
        image, labels = logic.segmentationToLabels(seg, volume)
        np.testing.assert_array_equal(labels.array, result.labels.array)
        with tempfile.TemporaryDirectory() as folder:
            case_id = logic.exportToDataset(seg, volume, folder)
            from lkseg.dataset import LocalDataset
            self.assertIn(case_id, LocalDataset(folder).cases())
        logic.close()
        self.delayDisplay("LargeKernelSeg test passed")
