"""Scoring label maps against reference labels (:mod:`.metrics`)."""

from lkseg.evaluation.metrics import dice, dice_per_label, mean_dice

__all__ = ["dice", "dice_per_label", "mean_dice"]
