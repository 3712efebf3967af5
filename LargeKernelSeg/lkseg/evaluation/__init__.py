"""Scoring label maps against reference labels: Dice (:mod:`.metrics`), per-organ overlap, surface
distances and volumes (:mod:`.organ_scores`, MONAI's metrics) and their reports (:mod:`.report`)."""

from lkseg.evaluation.metrics import dice, dice_per_label, mean_dice
from lkseg.evaluation.organ_scores import OrganScore, dice_mean, score_case, score_organ

__all__ = ["OrganScore", "dice", "dice_mean", "dice_per_label", "mean_dice", "score_case", "score_organ"]
