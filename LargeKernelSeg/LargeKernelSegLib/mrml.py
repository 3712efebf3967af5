"""The module's MRML side: volume node -> ``lkseg`` Image, a segmentation result -> segmentation
node (names, colours, terminology, reference geometry, subject hierarchy), and an edited
segmentation node -> label map on the volume's grid.

Unlike the rest of ``LargeKernelSegLib`` this file calls Slicer (``slicer``, MRML, VTK); it is
imported only by ``LargeKernelSeg.py``, never by ``LargeKernelSegLib/__init__.py``.
"""

import hashlib
import json
import logging

import slicer
import vtk
from vtkmodules.util.numpy_support import vtk_to_numpy

from .geometry import image_from_volume_arrays, labels_to_vtk_image
from .panel import output_choice
from .segments import (compose_label_map, label_value_for_segment, segment_id_list, segment_specs, segmentation_name,
                       table_from_text, table_to_text)

VALUES_ATTRIBUTE = "LargeKernelSeg.SegmentValues"  # node attribute: JSON {segment id: label value}
TABLE_ATTRIBUTE = "LargeKernelSeg.LabelTable"  # node attribute: the model's label table (JSON)
FINGERPRINT_ATTRIBUTE = "LargeKernelSeg.Fingerprint"  # node attribute: content_fingerprint() when written


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
    segmentationNode.SetAttribute(FINGERPRINT_ATTRIBUTE, content_fingerprint(segmentationNode))
    shNode = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer.mrmlScene)
    study = shNode.GetItemParent(shNode.GetItemByDataNode(volumeNode))
    shNode.SetItemParent(shNode.GetItemByDataNode(segmentationNode), study)
    if showSurfaces:
        segmentationNode.CreateClosedSurfaceRepresentation()
    slicer.util.setSliceViewerLayers(background=volumeNode)
    return segmentationNode


def content_fingerprint(segmentationNode):
    """SHA-256 over each segment's id, name, label value and binary label map (extent and voxels):
    any edit in Segment Editor, a renamed, added or removed segment changes it."""
    digest = hashlib.sha256()
    segmentation = segmentationNode.GetSegmentation()
    representation = slicer.vtkSegmentationConverter.GetSegmentationBinaryLabelmapRepresentationName()
    hashed = {}  # segments in one shared label map layer: hash its voxels once
    for index in range(segmentation.GetNumberOfSegments()):
        segmentId = segmentation.GetNthSegmentID(index)
        segment = segmentation.GetSegment(segmentId)
        digest.update(f"{segmentId}\0{segment.GetName()}\0{segment.GetLabelValue()}\0".encode())
        labelmap = segment.GetRepresentation(representation)
        if labelmap is None:
            digest.update(b"no labelmap\0")
            continue
        key = labelmap.GetAddressAsString("vtkObject")
        if key not in hashed:
            scalars = labelmap.GetPointData().GetScalars()
            voxels = hashlib.sha256(vtk_to_numpy(scalars).tobytes() if scalars is not None else b"")
            hashed[key] = f"{tuple(labelmap.GetExtent())}{voxels.hexdigest()}"
        digest.update(hashed[key].encode())
    return digest.hexdigest()


def result_target(segmentationNode):
    """(node to write into or None for a new one, note for the user): a node holding segments the user
    made or edited is never overwritten (:func:`LargeKernelSegLib.panel.output_choice`)."""
    if segmentationNode is None:
        return None, ""
    made_here = bool(segmentationNode.GetAttribute(FINGERPRINT_ATTRIBUTE))
    choice = output_choice(segmentationNode.GetName(), segmentationNode.GetSegmentation().GetNumberOfSegments(),
                           made_here, made_here and segmentationNode.GetAttribute(FINGERPRINT_ATTRIBUTE)
                           == content_fingerprint(segmentationNode))
    return (segmentationNode if choice.action == "reuse" else None), choice.reason


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
