"""Golden outputs of the reference libraries for C2's corruptions (glass/motion/elastic/snow/spatter).

``python tests/corruptions/_c2_golden.py`` regenerates ``data/c2_golden.npz`` with the libraries the
reference CIFAR-10-C script uses -- ImageMagick through Wand (6.9.11 Q16 here), OpenCV 4.x
(``opencv-python-headless<5``: OpenCV 5 changed ``warpAffine``), scikit-image and scipy -- on fixed
inputs and fixed random draws (:func:`draws`, numpy ``default_rng``).  The tests feed the same draws to
the engine's ``*_given`` functions and compare with the stored outputs, so CI checks the engine against
the real libraries without installing them.  Nothing here runs at import time.

Examples
--------
>>> d = draws(0)
>>> sorted(d)[:3]
['canny_inputs', 'elastic_affine', 'elastic_noise']
"""

from __future__ import annotations

import ctypes
import io
from pathlib import Path
from typing import Any

import numpy as np

GOLDEN = Path(__file__).resolve().parent / "data" / "c2_golden.npz"
N_IMAGES = 6
#: (radius, sigma, angle) of the stand-alone ImageMagick checks: snow's parameters and angles
MOTION_CASES = (
    (8, 3, -60.0),
    (10, 4, -135.0),
    (10, 4, -97.3),
    (12, 6, -45.0),
    (14, 12, -71.8),
    (9, 2.5, 12.5),
)
SNOW = (
    (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
    (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
    (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
    (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
    (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
)
SPATTER = (
    (0.62, 0.1, 0.7, 0.7, 0.5, 0),
    (0.65, 0.1, 0.8, 0.7, 0.5, 0),
    (0.65, 0.3, 1, 0.69, 0.5, 0),
    (0.65, 0.1, 0.7, 0.69, 0.6, 1),
    (0.65, 0.1, 0.5, 0.68, 0.6, 1),
)
ELASTIC = tuple(
    (32 * a, 32 * b, 32 * c)
    for a, b, c in ((0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05), (0.1, 0.03, 0.03))
)


def draws(seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs and random draws shared by the generator and the tests (numpy only)."""
    rng = np.random.default_rng(seed)
    return {
        "images": rng.integers(0, 256, (N_IMAGES, 32, 32, 3), dtype=np.uint8),
        "motion_inputs": rng.integers(0, 256, (len(MOTION_CASES), 32, 32), dtype=np.uint8),
        "snow_layer": rng.normal(size=(5, N_IMAGES, 32, 32)),
        "snow_angle": rng.uniform(-135, -45, (5, N_IMAGES)),
        "spatter_layer": rng.normal(size=(5, N_IMAGES, 32, 32)),
        "elastic_affine": np.stack([rng.uniform(-c[2], c[2], (N_IMAGES, 3, 2)) for c in ELASTIC]),
        "elastic_noise": rng.uniform(-1, 1, (5, N_IMAGES, 2, 32, 32)),
        "canny_inputs": rng.integers(0, 256, (8, 32, 32), dtype=np.uint8),
    }


def _motion(png: bytes, radius: float, sigma: float, angle: float) -> np.ndarray:
    import cv2
    from wand.api import library
    from wand.image import Image as WandImage

    library.MagickMotionBlurImage.argtypes = (
        ctypes.c_void_p,
        ctypes.c_double,
        ctypes.c_double,
        ctypes.c_double,
    )
    with WandImage(blob=png) as img:
        library.MagickMotionBlurImage(img.wand, radius, sigma, angle)
        blob = img.make_blob()
    return np.asarray(cv2.imdecode(np.frombuffer(blob, np.uint8), cv2.IMREAD_UNCHANGED))


def _png(arr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _ref_snow(img: np.ndarray, c: Any, layer: np.ndarray, angle: float) -> np.ndarray:
    import cv2
    from scipy.ndimage import zoom

    x = img.astype(np.float32) / 255.0
    snow = layer * c[1] + c[0]
    ch = int(np.ceil(32 / c[2]))
    top = (32 - ch) // 2
    snow = zoom(snow[top : top + ch, top : top + ch, None], (c[2], c[2], 1), order=1)
    trim = (snow.shape[0] - 32) // 2
    snow = snow[trim : trim + 32, trim : trim + 32]
    snow[snow < c[3]] = 0
    eight = (np.clip(snow.squeeze(), 0, 1) * 255).astype(np.uint8)
    blurred = _motion(_png(eight), c[4], c[5], angle)[..., None] / 255.0
    grey = cv2.cvtColor(x, cv2.COLOR_RGB2GRAY).reshape(32, 32, 1) * 1.5 + 0.5
    x = c[6] * x + (1 - c[6]) * np.maximum(x, grey)
    return np.clip(x + blurred + np.rot90(blurred, k=2), 0, 1) * 255


def _ref_spatter(img: np.ndarray, c: Any, layer: np.ndarray) -> np.ndarray:
    import cv2
    from skimage.filters import gaussian

    x = img.astype(np.float32) / 255.0
    liquid = gaussian(layer * c[1] + c[0], sigma=c[2])
    liquid[liquid < c[3]] = 0
    if c[5] == 0:
        liquid = (liquid * 255).astype(np.uint8)
        dist = cv2.distanceTransform(255 - cv2.Canny(liquid, 50, 150), cv2.DIST_L2, 5)
        _, dist = cv2.threshold(dist, 20, 20, cv2.THRESH_TRUNC)
        dist = cv2.equalizeHist(cv2.blur(dist, (3, 3)).astype(np.uint8))
        dist = cv2.filter2D(dist, cv2.CV_8U, np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]]))
        dist = cv2.blur(dist, (3, 3)).astype(np.float32)
        m = liquid * dist
        m = m / m.max() * c[4]
        colour = np.array([175 / 255.0, 238 / 255.0, 238 / 255.0], dtype=np.float32)
        return np.clip(x + m[..., None] * colour, 0, 1) * 255
    m = gaussian(np.where(liquid > c[3], 1, 0).astype(np.float32), sigma=c[4])
    m[m < 0.8] = 0
    colour = np.array([63 / 255.0, 42 / 255.0, 20 / 255.0], dtype=np.float32) * m[..., None]
    return np.clip(x * (1 - m[..., None]) + colour, 0, 1) * 255


def _ref_elastic(img: np.ndarray, c: Any, affine: np.ndarray, noise: np.ndarray) -> np.ndarray:
    import cv2
    from scipy.ndimage import map_coordinates
    from skimage.filters import gaussian

    image = img.astype(np.float32) / 255.0
    pts1 = np.float32([[26, 26], [26, 6], [6, 6]])
    pts2 = pts1 + affine.astype(np.float32)
    image = cv2.warpAffine(
        image, cv2.getAffineTransform(pts1, pts2), (32, 32), borderMode=cv2.BORDER_REFLECT_101
    )
    dx = (gaussian(noise[0], c[1], mode="reflect", truncate=3) * c[0]).astype(np.float32)
    dy = (gaussian(noise[1], c[1], mode="reflect", truncate=3) * c[0]).astype(np.float32)
    yy, xx, zz = np.meshgrid(np.arange(32), np.arange(32), np.arange(3), indexing="ij")
    coords = (yy + dy[..., None]).ravel(), (xx + dx[..., None]).ravel(), zz.ravel()
    out = map_coordinates(image, coords, order=1, mode="reflect").reshape(32, 32, 3)
    return np.clip(out, 0, 1) * 255


def make(path: Path = GOLDEN) -> None:
    """Run the reference libraries on :func:`draws` and save the uint8 / float32 results to ``path``."""
    import cv2

    if not cv2.__version__.startswith("4."):
        raise RuntimeError(
            f"use OpenCV 4.x for the golden file (warpAffine changed in 5), got {cv2.__version__}"
        )
    d = draws(0)
    imgs = d["images"]
    out: dict[str, np.ndarray] = {}
    out["motion"] = np.stack(
        [_motion(_png(d["motion_inputs"][k]), *case) for k, case in enumerate(MOTION_CASES)]
    ).astype(np.uint8)
    out["snow"] = np.stack(
        [
            np.stack(
                [
                    _ref_snow(imgs[i], SNOW[s], d["snow_layer"][s, i], d["snow_angle"][s, i])
                    for i in range(N_IMAGES)
                ]
            )
            for s in range(5)
        ]
    ).astype(np.uint8)
    out["spatter"] = np.stack(
        [
            np.stack([_ref_spatter(imgs[i], SPATTER[s], d["spatter_layer"][s, i]) for i in range(N_IMAGES)])
            for s in range(5)
        ]
    ).astype(np.uint8)
    out["elastic"] = np.stack(
        [
            np.stack(
                [
                    _ref_elastic(imgs[i], ELASTIC[s], d["elastic_affine"][s, i], d["elastic_noise"][s, i])
                    for i in range(N_IMAGES)
                ]
            )
            for s in range(5)
        ]
    ).astype(np.uint8)
    edges = []
    dists = []
    for k, im in enumerate(d["canny_inputs"]):
        im = cv2.GaussianBlur(im, (5, 5), 1.0 + 0.3 * k)
        e = cv2.Canny(im, 50, 150)
        edges.append(e)
        dists.append(cv2.distanceTransform(255 - e, cv2.DIST_L2, 5))
    out["canny_blurred"] = np.stack(
        [cv2.GaussianBlur(im, (5, 5), 1.0 + 0.3 * k) for k, im in enumerate(d["canny_inputs"])]
    )
    out["canny"] = np.stack(edges)
    out["distance"] = np.stack(dists).astype(np.float32)
    out["equalized"] = np.stack([cv2.equalizeHist((im // 13).astype(np.uint8)) for im in d["canny_inputs"]])
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **out)


if __name__ == "__main__":
    make()
    print(f"wrote {GOLDEN}")
