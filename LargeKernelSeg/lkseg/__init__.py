"""LargeKernelSeg core library: large-kernel 3D CNNs for organ segmentation.

The core never imports slicer, qt, ctk, vtk or PyQt5 (only ``lkseg.viewer`` imports PyQt5).
"""

__version__ = "0.1.0"
