"""Masked spectrogram modelling: masks and losses, as plain functions."""

from axlstm.objectives.masking import MaskDraw, random_masking
from axlstm.objectives.msm import msm_loss

__all__ = ["MaskDraw", "msm_loss", "random_masking"]
