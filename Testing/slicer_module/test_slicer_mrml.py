"""The Slicer module's MRML side (LargeKernelSegLib/mrml.py) on a real MRML scene from the slicer-core wheel.

An oblique, anisotropic volume under a rotating and translating parent transform, in a patient/study of
the subject hierarchy, is segmented by a real ``lkseg`` Segmenter; ``show_result`` writes the result
into a segmentation node through Slicer's own label map import, and ``segmentation_to_labels`` reads
it (and edits made to it with ``slicer.util``) back on the volume's grid. Only what the wheel lacks
(``slicer.modules``, the subject hierarchy's Qt plugin logic, a slice view) is stood in for, in
real_mrml.py.
"""

from __future__ import annotations

import logging
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from real_mrml import import_slicer
from vtkmodules.vtkCommonCore import reference
from vtkmodules.vtkCommonMath import vtkMatrix4x4

slicer = import_slicer()  # skips this file without slicer-core

MODULE_DIR = Path(__file__).resolve().parents[2] / "LargeKernelSeg"
sys.path.insert(0, str(MODULE_DIR))

from LargeKernelSegLib import mrml  # noqa: E402
from LargeKernelSegLib.geometry import numpy_to_vtk_matrix, vtk_matrix_to_numpy  # noqa: E402
from LargeKernelSegLib.segments import segment_specs, segmentation_name  # noqa: E402

SHAPE = (9, 15, 13)  # [k, j, i]: odd sizes, all different
THRESHOLDS = (0.5, 1.5, 2.5)  # organ1 / organ2 / organ3


def _rotation(axis, degrees) -> np.ndarray:
    """3x3 rotation about ``axis`` (Rodrigues)."""
    x, y, z = np.asarray(axis, float) / np.linalg.norm(axis)
    k = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    a = np.deg2rad(degrees)
    return np.eye(3) + np.sin(a) * k + (1 - np.cos(a)) * k @ k


def _ijk_to_ras() -> np.ndarray:
    """Oblique (no zero entry), k axis flipped, spacing 0.8 x 1.3 x 2.1 mm."""
    m = np.eye(4)
    m[:3, :3] = _rotation((1, 2, 3), 35) @ np.diag([1, 1, -1]) @ np.diag([0.8, 1.3, 2.1])
    m[:3, 3] = [-40.5, 12.25, 88.0]
    return m


def _to_parent() -> np.ndarray:
    """The volume's parent transform: 25 degrees about (2, -1, 1) and a (15, -7, 40) mm shift."""
    t = np.eye(4)
    t[:3, :3] = _rotation((2, -1, 1), 25)
    t[:3, 3] = [15.0, -7.0, 40.0]
    return t


def _intensities(seed: int = 0) -> np.ndarray:
    """Boxes of 1, 2, 3 and scattered voxels; the threshold network labels them organ1..3."""
    a = np.zeros(SHAPE, np.float32)
    a[1:4, 2:9, 1:7] = 1.0
    a[4:8, 6:13, 5:12] = 2.0
    a[2:6, 10:14, 2:5] = 3.0
    rng = np.random.default_rng(seed)
    scattered = rng.random(SHAPE) < 0.05
    a[scattered] = rng.integers(1, 4, size=int(scattered.sum()))
    return a


def _expected(a: np.ndarray) -> np.ndarray:
    return np.digitize(a, THRESHOLDS).astype(np.uint8)


def _segment(volumeNode, threshold_card, thresholds=THRESHOLDS):
    from lkseg.inference.segmenter import Segmenter

    model, card = threshold_card(thresholds=thresholds)
    return Segmenter(model, card, "cpu").segment(mrml.volume_to_image(volumeNode)), card


def _geometry(segmentationNode):
    """(matrix, extent) of the segmentation's reference image geometry."""
    text = segmentationNode.GetSegmentation().GetConversionParameter(
        slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName())
    matrix, extent = vtkMatrix4x4(), [0] * 6
    assert slicer.vtkSegmentationConverter.DeserializeImageGeometry(text, matrix, extent), text
    return vtk_matrix_to_numpy(matrix), tuple(extent)


@pytest.fixture
def segmented(mrml_scene, threshold_card):
    """The volume (under its transform, in a study) segmented and shown in a new segmentation node."""
    scene = mrml_scene
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "Registration")
    transform.SetMatrixTransformToParent(numpy_to_vtk_matrix(_to_parent()))
    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "CT 1")
    volume.SetIJKToRASMatrix(numpy_to_vtk_matrix(_ijk_to_ras()))
    slicer.util.updateVolumeFromArray(volume, _intensities())
    volume.CreateDefaultDisplayNodes()
    volume.SetAndObserveTransformNodeID(transform.GetID())
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    study = sh.CreateStudyItem(sh.CreateSubjectItem(sh.GetSceneItemID(), "Patient 1"), "Study 1")
    sh.SetItemParent(sh.GetItemByDataNode(volume), study)  # as a DICOM import files it
    result, card = _segment(volume, threshold_card)
    node = mrml.show_result(volume, result, card, None, False)
    return types.SimpleNamespace(scene=scene, volume=volume, transform=transform, sh=sh, study=study,
                                 result=result, card=card, node=node)


def test_the_segmenter_saw_the_volumes_voxels_and_geometry(segmented):
    image = mrml.volume_to_image(segmented.volume)
    np.testing.assert_array_equal(image.array, _intensities())
    np.testing.assert_allclose(image.ijk_to_ras(), _ijk_to_ras(), atol=1e-9)  # node frame, not world
    np.testing.assert_array_equal(segmented.result.labels.array, _expected(_intensities()))
    assert set(np.unique(segmented.result.labels.array)) == {0, 1, 2, 3}


def test_segments_carry_the_cards_names_colours_and_terminology(segmented):
    node, card = segmented.node, segmented.card
    specs = segment_specs(card.labels)
    segmentation = node.GetSegmentation()
    assert node.GetName() == segmentation_name("CT 1", card)
    assert [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())] == [
        s.segment_id for s in specs] == ["organ1", "organ2", "organ3"]
    terminologies = slicer.vtkSlicerTerminologiesModuleLogic()  # parses the tag as Slicer's editors do
    for spec in specs:
        label = card.labels.by_value(spec.value)
        segment = segmentation.GetSegment(spec.segment_id)
        assert segment.GetName() == label.name
        color = segment.GetColor()
        assert all(0.0 <= c <= 1.0 for c in color)
        np.testing.assert_allclose(color, np.array(label.color) / 255.0, atol=1e-6)
        tag = reference("")
        assert segment.GetTag(segment.GetTerminologyEntryTagName(), tag)
        assert str(tag) == segment.GetTerminology() == spec.terminology != ""
        entry = slicer.vtkSlicerTerminologyEntry()
        assert terminologies.DeserializeTerminologyEntry(segment.GetTerminology(), entry)
        assert (entry.GetTypeObject().GetCodingSchemeDesignator(), entry.GetTypeObject().GetCodeValue(),
                entry.GetTypeObject().GetCodeMeaning()) == (label.type.scheme, label.type.value, label.type.meaning)
        assert entry.GetCategoryObject().GetCodeValue() == label.category.value
        assert terminologies.SerializeTerminologyEntry(entry) == spec.terminology
    assert node.GetDisplayNode() is not None
    assert mrml.stored_table(node).same_as(card.labels)
    assert mrml.stored_table(segmented.scene.AddNewNodeByClass("vtkMRMLSegmentationNode")) is None
    # the temporary label map is gone, from the scene and from the subject hierarchy
    assert segmented.scene.GetNodesByClass("vtkMRMLLabelMapVolumeNode").GetNumberOfItems() == 0
    ids = []
    segmented.sh.GetItemChildren(segmented.sh.GetSceneItemID(), ids, True)
    assert all(segmented.sh.GetItemDataNode(i) is None or not segmented.sh.GetItemDataNode(i).IsA(
        "vtkMRMLLabelMapVolumeNode") for i in ids)
    red = segmented.scene.GetFirstNodeByClass("vtkMRMLSliceCompositeNode")
    assert red.GetBackgroundVolumeID() == segmented.volume.GetID()


def test_result_node_keeps_the_volumes_geometry_transform_and_study(segmented):
    node, volume, sh = segmented.node, segmented.volume, segmented.sh
    matrix, extent = _geometry(node)
    # in the node's own frame: the parent transform is the node's, not baked into the geometry
    assert not np.allclose(matrix, _to_parent() @ _ijk_to_ras(), atol=1e-3)
    np.testing.assert_allclose(matrix, _ijk_to_ras(), atol=1e-6)
    assert extent == tuple(volume.GetImageData().GetExtent()) == (0, SHAPE[2] - 1, 0, SHAPE[1] - 1, 0, SHAPE[0] - 1)
    assert node.GetNodeReference(node.GetReferenceImageGeometryReferenceRole()) is volume
    assert node.GetTransformNodeID() == volume.GetTransformNodeID() == segmented.transform.GetID()
    item = sh.GetItemByDataNode(node)
    assert item and sh.GetItemParent(item) == sh.GetItemParent(sh.GetItemByDataNode(volume)) == segmented.study
    # Slicer's own "export to label map" on the reference geometry lands on the volume's voxels
    labelNode = segmented.scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
    assert slicer.modules.segmentations.logic().ExportAllSegmentsToLabelmapNode(
        node, labelNode, slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY)
    m = vtkMatrix4x4()
    labelNode.GetIJKToRASMatrix(m)
    np.testing.assert_allclose(vtk_matrix_to_numpy(m), _ijk_to_ras(), atol=1e-6)
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(labelNode), segmented.result.labels.array)


def test_labels_round_trip_voxel_for_voxel(segmented):
    image, labels = mrml.segmentation_to_labels(segmented.node, segmented.volume, segmented.card.labels)
    assert labels.same_grid(image)
    np.testing.assert_allclose(labels.ijk_to_ras(), _ijk_to_ras(), atol=1e-9)
    assert labels.array.shape == SHAPE
    np.testing.assert_array_equal(labels.array, segmented.result.labels.array)
    # and read back through the stored table, as the module's export does
    _, again = mrml.segmentation_to_labels(segmented.node, segmented.volume, mrml.stored_table(segmented.node))
    np.testing.assert_array_equal(again.array, segmented.result.labels.array)


def test_edits_in_the_segmentation_are_exported(segmented, caplog):
    node, volume = segmented.node, segmented.volume
    segmentation = node.GetSegmentation()
    expected = segmented.result.labels.array.copy()
    segmentation.RemoveSegment("organ2")  # a false positive deleted
    expected[expected == 2] = 0
    painted = slicer.util.arrayFromSegmentBinaryLabelmap(node, "organ1", volume)  # a missed region painted
    assert painted.shape == SHAPE and painted.sum() == (expected == 1).sum()
    region = np.zeros(SHAPE, bool)
    region[6:9, 0:4, 8:13] = True
    region &= expected == 0
    assert region.sum() > 40
    painted[region] = 1
    slicer.util.updateSegmentBinaryLabelmapFromArray(painted, node, "organ1", volume)
    expected[region] = 1
    segmentation.GetSegment("organ3").SetName("Organ three (checked)")  # renamed: found by its id's value
    extra = segmentation.AddEmptySegment("tumour", "tumour")  # not in the model's labels: left out
    blob = np.zeros(SHAPE, np.uint8)
    blob[tuple(np.argwhere((expected == 0) & ~region)[0])] = 1
    slicer.util.updateSegmentBinaryLabelmapFromArray(blob, node, extra, volume)
    with caplog.at_level(logging.WARNING):
        image, labels = mrml.segmentation_to_labels(node, volume, segmented.card.labels)
    assert "tumour" in caplog.text
    np.testing.assert_array_equal(labels.array, expected)
    assert labels.same_grid(image)


def test_a_second_run_replaces_the_segments_of_the_same_node(segmented, threshold_card):
    """Another model (two organs) on changed voxels, into the node of the first run, with surfaces."""
    volume, node = segmented.volume, segmented.node
    changed = _intensities(seed=1)[::-1].copy()
    slicer.util.updateVolumeFromArray(volume, changed)
    result, card = _segment(volume, threshold_card, thresholds=THRESHOLDS[:2])
    assert mrml.show_result(volume, result, card, node, True) is node
    assert segmented.scene.GetNodesByClass("vtkMRMLSegmentationNode").GetNumberOfItems() == 1
    assert [node.GetSegmentation().GetNthSegmentID(i) for i in range(node.GetSegmentation().GetNumberOfSegments())
            ] == ["organ1", "organ2"]
    assert mrml.stored_table(node).same_as(card.labels)
    assert node.GetSegmentation().ContainsRepresentation(
        slicer.vtkSegmentationConverter.GetSegmentationClosedSurfaceRepresentationName())
    matrix, _ = _geometry(node)
    np.testing.assert_allclose(matrix, _ijk_to_ras(), atol=1e-6)
    _, labels = mrml.segmentation_to_labels(node, volume, card.labels)
    np.testing.assert_array_equal(labels.array, np.digitize(changed, THRESHOLDS[:2]))


def test_a_volume_without_a_transform_or_study(mrml_scene, threshold_card):
    volume = mrml_scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "plain")
    volume.SetIJKToRASMatrix(numpy_to_vtk_matrix(_ijk_to_ras()))
    slicer.util.updateVolumeFromArray(volume, _intensities(seed=2))
    result, card = _segment(volume, threshold_card)
    node = mrml.show_result(volume, result, card, None, False)
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(mrml_scene)
    assert node.GetTransformNodeID() is None
    assert sh.GetItemParent(sh.GetItemByDataNode(node)) == sh.GetSceneItemID()
    np.testing.assert_allclose(_geometry(node)[0], _ijk_to_ras(), atol=1e-6)
    _, labels = mrml.segmentation_to_labels(node, volume, card.labels)
    np.testing.assert_array_equal(labels.array, _expected(_intensities(seed=2)))
