"""The module's MRML side: volume node -> ``lkseg`` Image, a segmentation result -> segmentation
node (names, colours, terminology, reference geometry, subject hierarchy), and an edited
segmentation node -> label map on the volume's grid.

Unlike the rest of ``LargeKernelSegLib`` this file calls Slicer (``slicer``, MRML, VTK); it is
imported only by ``LargeKernelSeg.py``, never by ``LargeKernelSegLib/__init__.py``.
"""

import json
import logging

import slicer
import vtk

from .geometry import image_from_volume_arrays, labels_to_vtk_image
from .segments import (compose_label_map, label_value_for_segment, segment_id_list, segment_specs, segmentation_name,
                       table_from_text, table_to_text)

VALUES_ATTRIBUTE = "LargeKernelSeg.SegmentValues"  # node attribute: JSON {segment id: label value}
TABLE_ATTRIBUTE = "LargeKernelSeg.LabelTable"  # node attribute: the model's label table (JSON)


def volume_to_image(volumeNode):
    ijkToRas = vtk.vtkMatrix4x4()
    volumeNode.GetIJKToRASMatrix(ijkToRas)
    return image_from_volume_arrays(slicer.util.arrayFromVolume(volumeNode), ijkToRas)


def show_result(volumeNode, result, card, segmentationNode=None, showSurfaces=False):
    """Write a ``SegmentationResult`` into a segmentation node with the card's names, colours and codes."""
    specs = segment_specs(result.table)
    name = segmentation_name(volumeNode.GetName(), card)
    if segmentationNode is None:
        segmentationNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    segmentationNode.GetSegmentation().RemoveAllSegments()
    segmentationNode.CreateDefaultDisplayNodes()
    # transform first: the reference geometry is stored in the segmentation's frame, mapped through the
    # transform between the volume's parent and the segmentation's parent *at the time of the call*
    segmentationNode.SetAndObserveTransformNodeID(volumeNode.GetTransformNodeID())
    segmentationNode.SetReferenceImageGeometryParameterFromVolumeNode(volumeNode)
    imageData, ijkToRas = labels_to_vtk_image(result.labels)
    labelNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "__LargeKernelSeg_labels__")
    try:
        labelNode.SetIJKToRASMatrix(ijkToRas)
        labelNode.SetAndObserveImageData(imageData)
        labelNode.SetAndObserveTransformNodeID(volumeNode.GetTransformNodeID())
        ids = vtk.vtkStringArray()
        for segmentId in segment_id_list(specs):
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
    segmentationNode.SetAttribute(TABLE_ATTRIBUTE, table_to_text(result.table))
    shNode = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer.mrmlScene)
    study = shNode.GetItemParent(shNode.GetItemByDataNode(volumeNode))
    shNode.SetItemParent(shNode.GetItemByDataNode(segmentationNode), study)
    if showSurfaces:
        segmentationNode.CreateClosedSurfaceRepresentation()
    slicer.util.setSliceViewerLayers(background=volumeNode)
    return segmentationNode


def stored_table(segmentationNode):
    """The label table a result node was made with, or None for a node this module did not make."""
    text = segmentationNode.GetAttribute(TABLE_ATTRIBUTE)
    return table_from_text(text) if text else None


def segmentation_to_labels(segmentationNode, volumeNode, table):
    """(volume Image, label Image) from the (edited) segmentation on the volume's grid."""
    image = volume_to_image(volumeNode)
    values = json.loads(segmentationNode.GetAttribute(VALUES_ATTRIBUTE) or "{}")
    segmentation, masks, skipped = segmentationNode.GetSegmentation(), [], []
    for index in range(segmentation.GetNumberOfSegments()):
        segmentId = segmentation.GetNthSegmentID(index)
        name = segmentation.GetSegment(segmentId).GetName()
        value = label_value_for_segment(name, str(values.get(segmentId, "")), table)
        if value is None:
            skipped.append(name)
            continue
        masks.append((value, slicer.util.arrayFromSegmentBinaryLabelmap(segmentationNode, segmentId, volumeNode)))
    if skipped:
        logging.warning("LargeKernelSeg: segments not in the model's labels were not exported: %s", ", ".join(skipped))
    return image, image.with_array(compose_label_map(masks, image.array.shape))
