"""The module's self-test inside Slicer (synthetic volume, bundled model, real worker).

Calls Slicer; imported only by ``LargeKernelSeg.py``.
"""

import tempfile
import time

import slicer

from .dependencies import missing_modules
from .segments import segment_specs


class PanelSelfTest:
    """The panel's flow on a small synthetic volume with the bundled default model.

    Mixed into ``LargeKernelSegTest`` (``LargeKernelSeg.py``, what ctest and Reload and Test run), which
    gives :meth:`newLogic`, a fresh ``LargeKernelSegLogic``.
    """

    def setUp(self):
        slicer.mrmlScene.Clear(0)

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
        missing = missing_modules()
        if missing:  # a test never installs anything (ctest runs on build machines): say what was not run
            self.delayDisplay(f"LargeKernelSeg test: segmentation not run, missing Python packages {', '.join(missing)}")
            return
        import numpy as np
        logic = self.newLogic()
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
        self.assertEqual(names, [s.name for s in segment_specs(card)])
        self.assertEqual(segmentation.GetNthSegment(0).GetTerminology(), segment_specs(card)[0].terminology)
        image, labels = logic.segmentationToLabels(seg, volume)
        np.testing.assert_array_equal(labels.array, result.labels.array)
        with tempfile.TemporaryDirectory() as folder:
            case_id = logic.exportToDataset(seg, volume, folder)
            from lkseg.dataset.local import LocalDataset
            self.assertIn(case_id, LocalDataset(folder).cases())
        logic.close()
        self.delayDisplay("LargeKernelSeg test passed")
