"""LargeKernelSeg.py itself on a real MRML scene: its Logic segments through the real worker process with a
small checkpoint, and its Widget is driven through the real .ui's widget names, with only Slicer's Qt side
stood in for (module_standins.py). Guards defect #4 (result, selectors, one job, user segments kept),
closing the scene during a run, the model card read once typing pauses, and DICOM SEG on Slicer 5.10."""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest
from real_mrml import import_slicer

slicer = import_slicer()  # skips this file without slicer-core

import module_standins  # noqa: E402
from geometry_cases import oblique_flipped_ijk_to_ras  # noqa: E402


@pytest.fixture
def module(mrml_scene, monkeypatch, tmp_path):
    monkeypatch.setenv("LKSEG_HOME", str(tmp_path / "home"))  # settings and jobs away from the user's
    monkeypatch.setattr("lkseg.app.settings.default_settings_dir", lambda: tmp_path / "settings", raising=False)
    return module_standins.install(monkeypatch)


@pytest.fixture
def logic(module):
    made = module.LargeKernelSegLogic()
    yield made
    made.close()


def _volume(name, seed=0):
    array = np.zeros((10, 16, 14), np.float32)
    array[2:8, 3:12, 4:10] = 1.0
    array[4:6, 5:9, 5:8] = 2.0
    array[np.random.default_rng(seed).random(array.shape) < 0.03] = 2.0
    volume = slicer.util.addVolumeFromArray(array, oblique_flipped_ijk_to_ras(), name=name)
    return volume, array


def _expected(array):
    return np.digitize(array, (0.5, 1.5)).astype(np.uint8)


def _wait(logic, seconds=120):
    deadline = time.monotonic() + seconds
    while logic.isRunning():
        assert time.monotonic() < deadline, "the segmentation did not finish"
        time.sleep(0.05)


def _segment_ids(node):
    seg = node.GetSegmentation()
    return [seg.GetNthSegmentID(i) for i in range(seg.GetNumberOfSegments())]


def test_result_goes_to_the_segmented_volume_and_user_segments_are_kept(logic, threshold_checkpoint, mrml_scene):
    first, array = _volume("first")
    other, _ = _volume("other", seed=3)
    mine = mrml_scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "my contours")
    mine.GetSegmentation().AddEmptySegment("tumour", "tumour")
    logic.startSegmentation(first, str(threshold_checkpoint), "cpu", mine)
    logic.getParameterNode().inputVolume = other  # the selection moves on while it runs
    _wait(logic)
    node, note = logic.finishSegmentation()
    assert node is not mine and _segment_ids(mine) == ["tumour"]  # the user's node is untouched
    assert "'my contours' holds segments made elsewhere" in note
    assert node.GetNodeReference(node.GetReferenceImageGeometryReferenceRole()) is first
    assert node.GetName().startswith("first ")
    _, labels = logic.segmentationToLabels(node, first)
    np.testing.assert_array_equal(labels.array, _expected(array))
    # the same node again: an untouched result of ours is replaced in place
    logic.startSegmentation(first, str(threshold_checkpoint), "cpu", node)
    _wait(logic)
    again, note = logic.finishSegmentation()
    assert again is node and note == ""
    # once edited (a segment painted), it is kept and the next result goes into a new node
    painted = slicer.util.arrayFromSegmentBinaryLabelmap(node, "organ1", first)
    painted[0, 0, 0] = 1
    slicer.util.updateSegmentBinaryLabelmapFromArray(painted, node, "organ1", first)
    logic.startSegmentation(first, str(threshold_checkpoint), "cpu", node)
    _wait(logic)
    third, note = logic.finishSegmentation()
    assert third is not node and "was edited after it was made" in note
    assert slicer.util.arrayFromSegmentBinaryLabelmap(node, "organ1", first)[0, 0, 0] == 1


def test_a_removed_volume_or_closed_scene_is_said_plainly(logic, threshold_checkpoint, mrml_scene):
    from lkseg.errors import LkSegError

    volume, _ = _volume("gone")
    logic.startSegmentation(volume, str(threshold_checkpoint), "cpu")
    mrml_scene.RemoveNode(volume)
    _wait(logic)
    with pytest.raises(LkSegError, match="'gone' was removed while it was being segmented"):
        logic.finishSegmentation()
    volume, _ = _volume("closing")
    logic.startSegmentation(volume, str(threshold_checkpoint), "cpu")
    logic.sceneClosing()
    mrml_scene.Clear(0)
    _wait(logic)
    with pytest.raises(LkSegError, match="The scene was closed while segmenting"):
        logic.finishSegmentation()
    assert mrml_scene.GetNodesByClass("vtkMRMLSegmentationNode").GetNumberOfItems() == 0


@pytest.fixture
def widget(module):
    made = module.LargeKernelSegWidget()
    made.setup()
    yield made
    made.cleanup()


def test_selectors_are_frozen_while_segmenting_and_free_after(widget, threshold_checkpoint, tmp_path):
    volume, array = _volume("CT")
    big = slicer.util.addVolumeFromArray(np.ones((60, 160, 160), np.float32), name="big")  # long enough to cancel
    p = widget._parameterNode
    p.inputVolume, p.device, p.checkpointPath = volume, "cpu", str(threshold_checkpoint)
    frozen = ("inputVolumeSelector", "outputSegmentationSelector", "checkpointPathLineEdit", "deviceComboBox")
    for outcome in ("done", "cancelled", "failed"):
        p.inputVolume = big if outcome == "cancelled" else volume
        widget.ui.applyButton.click()
        assert widget.ui.applyButton.text == "Cancel" and widget.ui.applyButton.enabled
        assert not any(getattr(widget.ui, name).enabled for name in frozen), outcome
        assert not widget.ui.exportToDatasetButton.enabled
        if outcome == "cancelled":
            widget.ui.applyButton.click()  # the same button cancels
        if outcome == "failed":
            slicer.mrmlScene.RemoveNode(volume)  # the run cannot deliver its result
        _wait(widget.logic)
        widget.segmentTimer.fire()
        assert not widget.segmentTimer.isActive()
        assert all(getattr(widget.ui, name).enabled for name in frozen), outcome
        assert widget.ui.applyButton.text == "Segment"
        status = widget.ui.statusLabel.text
        assert {"done": status.startswith("Done: 2 organs on cpu"), "cancelled": status.startswith("Stopped"),
                "failed": "'CT' was removed while it was being segmented" in status}[outcome], (outcome, status)
        if outcome == "done":
            assert widget.ui.exportToDatasetButton.enabled and p.outputSegmentation is not None
            widget.ui.datasetFolderPathLineEdit.currentPath = str(tmp_path / "ds")
            widget.ui.datasetFolderPathLineEdit.emit("currentPathChanged(QString)", str(tmp_path / "ds"))
            widget.ui.exportToDatasetButton.click()
            assert widget.ui.statusLabel.text.startswith("Added case CT to the dataset"), widget.ui.statusLabel.text
            widget.ui.exportFileButton.click()  # NIfTI, the default format
            assert widget.ui.statusLabel.text == f"Saved {tmp_path / 'ds' / 'exports' / 'CT.nii.gz'}."
            status = widget.ui.statusLabel.text
        assert widget.ui.logTextEdit.lines and widget.ui.logTextEdit.lines[-1].endswith(status)


def test_one_fine_tuning_job_at_a_time_and_it_survives_a_scene_close(widget, threshold_checkpoint, tmp_path,
                                                                      mrml_scene):
    from lkseg.checkpoint.native import read_card
    from lkseg.dataset.local import LocalDataset

    dataset = tmp_path / "ds"
    LocalDataset.create(dataset, read_card(threshold_checkpoint).labels)
    (dataset / "jobs").mkdir()
    widget.ui.datasetFolderPathLineEdit.currentPath = str(dataset)
    widget._parameterNode.checkpointPath = str(threshold_checkpoint)
    widget._parameterNode.fineTuneSteps = 4
    widget._parameterNode.fineTuneDevice = "cpu"
    widget.ui.startFineTuneButton.click()
    first = widget.logic.jobDir
    assert first and widget.jobTimer.isActive()
    assert not widget.ui.startFineTuneButton.enabled and widget.ui.cancelFineTuneButton.enabled
    assert not widget.ui.datasetFolderPathLineEdit.enabled
    widget.onStartFineTune()  # a second start (e.g. from a script) is refused, the first kept
    assert widget.logic.jobDir == first and "still running" in widget.ui.fineTuneStatusLabel.text
    widget.onSceneStartClose(None, None)
    assert "keeps running" in widget.ui.fineTuneStatusLabel.text
    mrml_scene.Clear(0)
    widget.onSceneEndClose(None, None)
    assert widget._parameterNode.jobDir == first  # the new scene's parameter node names the job again
    deadline = time.monotonic() + 120
    while widget.jobTimer.isActive():  # an empty dataset: the job fails, and the panel says why
        assert time.monotonic() < deadline
        widget.jobTimer.fire()
        time.sleep(0.3)
    assert widget.ui.fineTuneStatusLabel.text.startswith("Failed")
    assert widget.ui.startFineTuneButton.enabled and not widget.ui.cancelFineTuneButton.enabled


def test_the_model_card_is_read_once_typing_pauses_without_logged_errors(widget, threshold_checkpoint, caplog):
    reads = []
    real = widget.logic.readCard
    widget.logic.readCard = lambda path: reads.append(path) or real(path)
    path = str(threshold_checkpoint)
    with caplog.at_level(logging.INFO):
        for n in range(1, len(path) + 1):  # one signal per keystroke
            widget.ui.checkpointPathLineEdit.currentPath = path[:n]
            widget.ui.checkpointPathLineEdit.emit("currentPathChanged(QString)", path[:n])
            if n == len(path) // 2:
                widget.cardTimer.fire()  # a pause half way: a partial path is a hint, not an error
                assert widget.ui.cardSummaryTextBrowser.plainText.startswith("No model file at this path yet")
        assert reads == [] and widget.cardTimer.isActive()
        widget.cardTimer.fire()
        assert not widget.cardTimer.isActive()  # single shot
    assert reads == [path]
    assert "Architecture: threshold-test" in widget.ui.cardSummaryTextBrowser.plainText
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_dicom_seg_on_slicer_5_10_asks_for_quantitative_reporting(logic, monkeypatch):
    from lkseg.errors import LkSegError

    volume, _ = _volume("CT")
    seg = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    with pytest.raises(LkSegError, match="needs the QuantitativeReporting extension"):
        logic.exportToFile(seg, volume, "/nonexistent", "DICOM SEG")
    monkeypatch.setattr(slicer.app, "minorVersion", 12)
    with pytest.raises(LkSegError, match="DICOM segmentation plugin is not loaded in Slicer 5.12"):
        logic.exportToFile(seg, volume, "/nonexistent", "DICOM SEG")


def test_the_module_registers_its_terminology_and_sample_at_startup(module, mrml_scene, monkeypatch):
    import types

    terminologies = slicer.vtkSlicerTerminologiesModuleLogic()
    monkeypatch.setattr(slicer.modules, "terminologies", types.SimpleNamespace(logic=lambda: terminologies),
                        raising=False)
    registered = []
    sample_data = types.ModuleType("SampleData")  # stands in for Slicer's SampleData module (Qt)
    sample_data.SampleDataLogic = types.SimpleNamespace(registerCustomSampleDataSource=lambda **kw: registered.append(kw))
    monkeypatch.setitem(__import__("sys").modules, "SampleData", sample_data)
    parent = types.SimpleNamespace()
    module.LargeKernelSeg(parent)
    assert parent.title == "LargeKernelSeg" and "the-slicer-extension" in parent.helpText
    slicer.app.emit("startupCompleted()")
    assert terminologies.IsTerminologyContextLoaded("Segmentation category and type - LargeKernelSeg")
    assert [r["sampleName"] for r in registered] == ["LargeKernelSeg abdominal CT",
                                                     "LargeKernelSeg abdominal T2 MR (CHAOS, CC BY-NC-SA)"]
    assert registered[0]["checksums"].startswith("SHA256:")


def test_the_modules_own_self_test_runs_on_the_real_scene(module, mrml_scene):
    """What ctest runs: the bundled default model through the real worker, names, terminology, export."""
    case = module.LargeKernelSegTest("runTest")
    case.runTest()
    assert case.messages == ["LargeKernelSeg test passed"]
    assert mrml_scene.GetNodesByClass("vtkMRMLSegmentationNode").GetNumberOfItems() == 1


def test_the_self_test_never_installs_packages(module, monkeypatch):
    """On a build machine without torch the registered ctest must not install it: it says what it skipped."""
    from LargeKernelSegLib import install, selftest

    monkeypatch.setattr(selftest, "missing_modules", lambda: ["torch", "monai"])
    monkeypatch.setattr(install, "ensure_dependencies", lambda ask=True: pytest.fail("the self-test installed packages"))
    case = module.LargeKernelSegTest("runTest")
    case.runTest()
    assert case.messages == ["LargeKernelSeg test: segmentation not run, missing Python packages torch, monai"]


def test_closing_the_scene_while_segmenting_says_so_in_the_panel(widget, threshold_checkpoint, mrml_scene):
    big = slicer.util.addVolumeFromArray(np.ones((60, 160, 160), np.float32), name="big")
    p = widget._parameterNode
    p.inputVolume, p.device, p.checkpointPath = big, "cpu", str(threshold_checkpoint)
    widget.ui.applyButton.click()
    widget.onSceneStartClose(None, None)  # what StartCloseEvent calls
    mrml_scene.Clear(0)
    widget.onSceneEndClose(None, None)
    _wait(widget.logic)
    widget.segmentTimer.fire()
    assert widget.ui.statusLabel.text.startswith("The scene was closed while segmenting"), widget.ui.statusLabel.text
    assert widget._parameterNode is not None and not widget._parameterNode.outputSegmentation
    assert widget.ui.inputVolumeSelector.enabled and widget.ui.applyButton.text == "Segment"
