"""From a preprocessed volume to labels on the input grid: sliding-window inference
(:mod:`.sliding_window`), the exact way back onto the input voxels (:mod:`.back_resampling`),
post-processing (:mod:`.postprocessing`) and the :class:`Segmenter` that runs them all
(:mod:`.segmenter`).

Stable entry points: ``lkseg.inference.Segmenter``, ``SegmentationResult``, ``segment_file``.
"""

from lkseg.inference.segmenter import SegmentationResult, Segmenter, segment_file

__all__ = ["SegmentationResult", "Segmenter", "segment_file"]
