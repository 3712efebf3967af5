"""The module's help and acknowledgement texts (shown in Slicer's Help & Acknowledgement box)."""

HELP_TEXT = (
    "Segments abdominal organs in the selected CT volume with a large-kernel 3D network "
    "(3D UX-Net, RepUX-Net, 3D DeformUX-Net or MedNeXt). Pick a volume and a model file "
    "(or keep the bundled default), press Segment, correct the result in Segment Editor, "
    "add the corrected case to a local dataset and fine-tune the model on it.")

DOCUMENTATION_URL = "https://github.com/LargeKernelSeg/SlicerLargeKernelSeg#the-slicer-extension"
HELP_LINK = f" See <a href='{DOCUMENTATION_URL}'>the module's documentation</a>."
"""Appended to the (translated) help text: the link to the module's page."""

ACKNOWLEDGEMENT_TEXT = (
    "Networks: H. H. Lee et al., 3D UX-Net: A Large Kernel Volumetric ConvNet Modernizing "
    "Hierarchical Transformer for Medical Image Segmentation, ICLR 2023; H. H. Lee et al., "
    "Scaling Up 3D Kernels with Bayesian Frequency Re-parameterization for Medical Image "
    "Segmentation (RepUX-Net), MICCAI 2023; H. H. Lee et al., DeformUX-Net: Exploring a 3D "
    "Foundation Backbone for Medical Image Segmentation with Depthwise Deformable Convolution, "
    "2023; S. Roy et al., MedNeXt: Transformer-driven Scaling of ConvNets for Medical Image "
    "Segmentation, MICCAI 2023. Built on PyTorch, MONAI and SimpleITK.")
