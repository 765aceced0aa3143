"""Native CIFAR-10-C corruption engine: the 19 corruptions, batched in torch, seeded per image.

* :func:`corrupt` -- one corruption at one severity on a batch (uint8 NHWC or float NCHW, numpy or torch).
* :class:`~prunesafe.corruptions._random.ImageRNG` -- per-image random streams (batch-split independent).
* :class:`OnTheFlyCIFARC` -- a CIFAR10C look-alike whose cells are generated when read.
* :func:`write_cifar_c` -- write a CIFAR-10-C-layout folder (also ``prunesafe make-c``).
* :func:`register_corruption` / :func:`get_corruption` / :func:`registered_corruptions` -- the registry.

The loader of the released CIFAR-10-C files is :mod:`prunesafe.data.cifar_c` (not this package).

Examples
--------
>>> import numpy as np
>>> from prunesafe.corruptions import corrupt
>>> corrupt(np.zeros((1, 32, 32, 3), np.uint8), "brightness", 1).max()
np.uint8(12)
"""

from prunesafe.corruptions._random import DEFAULT_SEED, ImageRNG, image_seed
from prunesafe.corruptions._registry import (
    ALL_CORRUPTIONS,
    BENCHMARK_CORRUPTIONS,
    EXTRA_CORRUPTIONS,
    SEVERITIES,
    CorruptionSpec,
    get_corruption,
    register_corruption,
    registered_corruptions,
)
from prunesafe.corruptions.api import corrupt
from prunesafe.corruptions.dataset import GeneratedCell, OnTheFlyCIFARC
from prunesafe.corruptions.writer import write_cifar_c

__all__ = [
    "ALL_CORRUPTIONS",
    "BENCHMARK_CORRUPTIONS",
    "DEFAULT_SEED",
    "EXTRA_CORRUPTIONS",
    "SEVERITIES",
    "CorruptionSpec",
    "GeneratedCell",
    "ImageRNG",
    "OnTheFlyCIFARC",
    "corrupt",
    "get_corruption",
    "image_seed",
    "register_corruption",
    "registered_corruptions",
    "write_cifar_c",
]
