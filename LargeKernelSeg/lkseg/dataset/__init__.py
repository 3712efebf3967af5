"""The user's local dataset of corrected cases, in the Medical Segmentation Decathlon / nnU-Net
layout (``imagesTr/``, ``labelsTr/``, ``dataset.json``): :mod:`.local` holds
:class:`LocalDataset`, :mod:`.files` the file-level helpers (history, lock, headers).

Stable entry points: ``lkseg.dataset.LocalDataset``, ``load_label_table``.
"""

from lkseg.dataset.files import DatasetError, read_header
from lkseg.dataset.label_tables import load_label_table
from lkseg.dataset.local import LocalDataset

__all__ = ["DatasetError", "LocalDataset", "load_label_table", "read_header"]
