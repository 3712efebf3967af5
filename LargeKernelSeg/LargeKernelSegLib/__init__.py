"""Glue and logic of the LargeKernelSeg module, outside its main file (SlicerNNUnet's layout).

What this package exports is Slicer-independent: plain functions and classes on numpy arrays, VTK
objects (``vtkMatrix4x4``, ``vtkImageData``) and ``lkseg`` objects (:mod:`.session` holds the worker,
exports and fine-tuning jobs), tested with real VTK outside Slicer. Nothing imported here imports
slicer, qt or ctk, and nothing imports torch at import time. Three modules do call Slicer and are
imported only by ``LargeKernelSeg.py``: :mod:`.mrml` (nodes <-> images and labels), :mod:`.install`
(dependency installation) and :mod:`.selftest` (the module's self-test).
"""

from .dependencies import (
    REQUIREMENTS,
    install_prompt,
    lkseg_parent,
    missing_modules,
    pip_requirements,
    read_requirements,
)
from .finetune import fine_tune_argv, job_total_steps, new_job_dir
from .geometry import (
    array_from_vtk_image,
    image_from_volume_arrays,
    labels_to_vtk_image,
    numpy_to_vtk_matrix,
    vtk_image_from_array,
    vtk_matrix_to_numpy,
)
from .messages import is_cancelled, user_message
from .paths import EXPORT_FORMATS, export_path, sanitize_case_id
from .segments import (
    LABEL_VALUE_TAG,
    SegmentSpec,
    compose_label_map,
    label_value_for_segment,
    parse_terminology_entry,
    segment_id_list,
    segment_specs,
    segmentation_name,
    table_from_text,
    table_to_text,
    terminology_entry,
)
from lkseg.app.settings import UserSettings as PanelSettings, default_settings_dir
from .summary import JobView, card_summary, card_text, job_view, read_progress
from .texts import ACKNOWLEDGEMENT_TEXT, DOCUMENTATION_URL, HELP_LINK, HELP_TEXT
from .task import BackgroundTask

__all__ = [
    "ACKNOWLEDGEMENT_TEXT", "BackgroundTask", "DOCUMENTATION_URL", "HELP_LINK", "card_text", "is_cancelled", "EXPORT_FORMATS", "HELP_TEXT", "JobView", "LABEL_VALUE_TAG", "PanelSettings", "REQUIREMENTS", "SegmentSpec",
    "array_from_vtk_image", "card_summary", "compose_label_map", "default_settings_dir",
    "export_path", "fine_tune_argv", "job_total_steps", "new_job_dir", "image_from_volume_arrays", "install_prompt", "job_view", "label_value_for_segment",
    "labels_to_vtk_image", "lkseg_parent", "missing_modules", "numpy_to_vtk_matrix", "parse_terminology_entry",
    "pip_requirements", "read_progress", "read_requirements", "sanitize_case_id", "segment_id_list", "segment_specs",
    "segmentation_name", "table_from_text", "table_to_text", "terminology_entry", "user_message", "vtk_image_from_array", "vtk_matrix_to_numpy",
]
