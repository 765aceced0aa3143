"""Corruption names as issue 10 lists them (an independent record of which are deterministic)."""

from __future__ import annotations

#: The eight corruptions the issue calls deterministic (their output does not depend on the seed).
DETERMINISTIC = (
    "brightness",
    "contrast",
    "saturate",
    "pixelate",
    "jpeg_compression",
    "defocus_blur",
    "gaussian_blur",
    "zoom_blur",
)
#: The four per-value noise corruptions.
NOISES = ("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise")
