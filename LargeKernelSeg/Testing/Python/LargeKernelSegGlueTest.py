"""Inside Slicer: LargeKernelSegLib's geometry glue against real volume nodes (run by ctest)."""

import unittest

import numpy as np
import slicer
import vtk

import LargeKernelSegLib as glue


class LargeKernelSegGlueTest(unittest.TestCase):
    def setUp(self):
        slicer.mrmlScene.Clear()

    def test_volume_round_trip(self):
        """arrayFromVolume + IJKToRAS -> Image -> labelmap node reproduces voxels and geometry."""
        array = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
        ijkToRas = np.array([[0.0, 0.8, 0.0, 5.0], [-1.2, 0.0, 0.0, -7.0], [0.0, 0.0, -2.0, 3.0], [0, 0, 0, 1]])
        volume = slicer.util.addVolumeFromArray(array, ijkToRas, name="glue")
        matrix = vtk.vtkMatrix4x4()
        volume.GetIJKToRASMatrix(matrix)
        image = glue.image_from_volume_arrays(slicer.util.arrayFromVolume(volume), matrix)
        np.testing.assert_allclose(image.ijk_to_ras(), ijkToRas, atol=1e-6)
        labels = image.with_array((array % 3).astype(np.uint8))
        imageData, labelMatrix = glue.labels_to_vtk_image(labels)
        node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
        node.SetIJKToRASMatrix(labelMatrix)
        node.SetAndObserveImageData(imageData)
        np.testing.assert_array_equal(slicer.util.arrayFromVolume(node), labels.array)
        back = vtk.vtkMatrix4x4()
        node.GetIJKToRASMatrix(back)
        np.testing.assert_allclose(glue.vtk_matrix_to_numpy(back), ijkToRas, atol=1e-6)
