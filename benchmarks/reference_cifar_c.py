"""Per-image transcription of the reference CIFAR-10-C generator (Hendrycks & Dietterich 2019).

Written from the algorithm and CIFAR severity parameters of ``make_cifar_c.py`` (robustness repository,
``ImageNet-C/create_c``), ported to today's libraries: ``np.float64`` for ``np.float_``,
``np.frombuffer`` for the binary ``np.fromstring``, ``channel_axis=-1`` for skimage's ``multichannel``.
Each function takes one uint8 HWC 32x32 image (numpy) and returns the reference's float (or uint8)
result before the final ``np.uint8``; randomness comes from the global numpy RNG as in the reference.

Used by ``bench_corruptions.py`` to time the reference per image in the same run as the engine.  Needs
the ``bench`` extra (scikit-image, opencv-python-headless, Wand + the ImageMagick library); frost needs
the texture folder.
"""

# ruff: noqa: NPY002  (the reference draws from numpy's global RNG; kept so its cost is the same)
from __future__ import annotations

import ctypes
import math
from io import BytesIO
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import skimage as sk
from PIL import Image
from scipy.ndimage import map_coordinates
from scipy.ndimage import zoom as scizoom
from skimage.filters import gaussian

FROST_FILES = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg", "frost6.jpg")


def _motion_blur_png(png: bytes, radius: float, sigma: float, angle: float) -> np.ndarray:
    """ImageMagick MotionBlurImage through Wand on a PNG blob; decoded back with cv2 (BGR or grey)."""
    from wand.api import library
    from wand.image import Image as WandImage

    library.MagickMotionBlurImage.argtypes = (ctypes.c_void_p, ctypes.c_double, ctypes.c_double, ctypes.c_double)
    with WandImage(blob=png) as img:
        library.MagickMotionBlurImage(img.wand, radius, sigma, angle)
        blob = img.make_blob()
    return cv2.imdecode(np.frombuffer(blob, np.uint8), cv2.IMREAD_UNCHANGED)


def _disk(radius: float, alias_blur: float) -> np.ndarray:
    if radius <= 8:
        ax, ksize = np.arange(-8, 9), (3, 3)
    else:
        ax, ksize = np.arange(-radius, radius + 1), (5, 5)
    xx, yy = np.meshgrid(ax, ax)
    d = np.array((xx**2 + yy**2) <= radius**2, dtype=np.float32)
    d /= d.sum()
    return cv2.GaussianBlur(d, ksize=ksize, sigmaX=alias_blur)


def _plasma(mapsize: int = 32, decay: float = 3) -> np.ndarray:
    grid = np.empty((mapsize, mapsize), dtype=np.float64)
    grid[0, 0] = 0
    step, wibble = mapsize, 100.0
    while step >= 2:
        half = step // 2
        corners = grid[0:mapsize:step, 0:mapsize:step]
        sq = corners + np.roll(corners, -1, axis=0)
        sq = sq + np.roll(sq, -1, axis=1)
        grid[half:mapsize:step, half:mapsize:step] = sq / 4 + wibble * np.random.uniform(-wibble, wibble, sq.shape)
        n = grid.shape[0]
        dr = grid[half:n:step, half:n:step]
        ul = grid[0:n:step, 0:n:step]
        lt = dr + np.roll(dr, 1, axis=0) + ul + np.roll(ul, -1, axis=1)
        grid[0:n:step, half:n:step] = lt / 4 + wibble * np.random.uniform(-wibble, wibble, lt.shape)
        tt = dr + np.roll(dr, 1, axis=1) + ul + np.roll(ul, -1, axis=0)
        grid[half:n:step, 0:n:step] = tt / 4 + wibble * np.random.uniform(-wibble, wibble, tt.shape)
        step //= 2
        wibble /= decay
    grid -= grid.min()
    return grid / grid.max()


def _clipped_zoom(img: np.ndarray, z: float) -> np.ndarray:
    h = img.shape[0]
    ch = math.ceil(h / z)
    top = (h - ch) // 2
    out = scizoom(img[top : top + ch, top : top + ch], (z, z, 1), order=1)
    trim = (out.shape[0] - h) // 2
    return out[trim : trim + h, trim : trim + h]


def gaussian_noise(x: np.ndarray, s: int) -> np.ndarray:
    c = [0.04, 0.06, 0.08, 0.09, 0.10][s - 1]
    x = x / 255.0
    return np.clip(x + np.random.normal(size=x.shape, scale=c), 0, 1) * 255


def shot_noise(x: np.ndarray, s: int) -> np.ndarray:
    c = [500, 250, 100, 75, 50][s - 1]
    x = x / 255.0
    return np.clip(np.random.poisson(x * c) / c, 0, 1) * 255


def impulse_noise(x: np.ndarray, s: int) -> np.ndarray:
    c = [0.01, 0.02, 0.03, 0.05, 0.07][s - 1]
    return np.clip(sk.util.random_noise(x / 255.0, mode="s&p", amount=c), 0, 1) * 255


def speckle_noise(x: np.ndarray, s: int) -> np.ndarray:
    c = [0.06, 0.1, 0.12, 0.16, 0.2][s - 1]
    x = x / 255.0
    return np.clip(x + x * np.random.normal(size=x.shape, scale=c), 0, 1) * 255


def gaussian_blur(x: np.ndarray, s: int) -> np.ndarray:
    c = [0.4, 0.6, 0.7, 0.8, 1.0][s - 1]
    return np.clip(gaussian(x / 255.0, sigma=c, channel_axis=-1), 0, 1) * 255


def glass_blur(x: np.ndarray, s: int) -> np.ndarray:
    sigma, delta, iters = [(0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)][s - 1]
    img = np.uint8(gaussian(x / 255.0, sigma=sigma, channel_axis=-1) * 255)
    for _ in range(iters):
        for h in range(32 - delta, delta, -1):
            for w in range(32 - delta, delta, -1):
                dx, dy = np.random.randint(-delta, delta, size=(2,))
                hp, wp = h + dy, w + dx
                img[h, w], img[hp, wp] = img[hp, wp], img[h, w]  # the reference's (view-aliasing) swap
    return np.clip(gaussian(img / 255.0, sigma=sigma, channel_axis=-1), 0, 1) * 255


def defocus_blur(x: np.ndarray, s: int) -> np.ndarray:
    c = [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)][s - 1]
    x = x / 255.0
    k = _disk(c[0], c[1])
    out = np.stack([cv2.filter2D(x[:, :, d], -1, k) for d in range(3)], axis=-1)
    return np.clip(out, 0, 1) * 255


def motion_blur(x: np.ndarray, s: int) -> np.ndarray:
    radius, sigma = [(6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)][s - 1]
    buf = BytesIO()
    Image.fromarray(x).save(buf, format="PNG")
    out = _motion_blur_png(buf.getvalue(), radius, sigma, np.random.uniform(-45, 45))
    if out.shape != (32, 32):
        return np.clip(out[..., [2, 1, 0]], 0, 255)
    return np.clip(np.stack([out, out, out], axis=-1), 0, 255)


def zoom_blur(x: np.ndarray, s: int) -> np.ndarray:
    stop = [1.06, 1.11, 1.16, 1.21, 1.26][s - 1]
    factors = np.arange(1, stop, 0.01)
    x = (x / 255.0).astype(np.float32)
    acc = np.zeros_like(x)
    for z in factors:
        acc += _clipped_zoom(x, z)
    return np.clip((x + acc) / (len(factors) + 1), 0, 1) * 255


def snow(x: np.ndarray, s: int) -> np.ndarray:
    c = [
        (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
        (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
        (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
        (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
        (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
    ][s - 1]
    x = np.array(x, dtype=np.float32) / 255.0
    layer = np.random.normal(size=x.shape[:2], loc=c[0], scale=c[1])
    layer = _clipped_zoom(layer[..., np.newaxis], c[2])
    layer[layer < c[3]] = 0
    grey = Image.fromarray((np.clip(layer.squeeze(), 0, 1) * 255).astype(np.uint8), mode="L")
    buf = BytesIO()
    grey.save(buf, format="PNG")
    layer = _motion_blur_png(buf.getvalue(), c[4], c[5], np.random.uniform(-135, -45)) / 255.0
    layer = layer[..., np.newaxis]
    x = c[6] * x + (1 - c[6]) * np.maximum(x, cv2.cvtColor(x, cv2.COLOR_RGB2GRAY).reshape(32, 32, 1) * 1.5 + 0.5)
    return np.clip(x + layer + np.rot90(layer, k=2), 0, 1) * 255


_FROST_CACHE: dict[str, np.ndarray] = {}


def frost(x: np.ndarray, s: int, frost_dir: str | Path) -> np.ndarray:
    c = [(1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)][s - 1]
    name = FROST_FILES[np.random.randint(5)]
    if name not in _FROST_CACHE:  # the reference re-reads the file for every image; cached here
        img = cv2.imread(str(Path(frost_dir) / name))
        _FROST_CACHE[name] = cv2.resize(img, (0, 0), fx=0.2, fy=0.2)
    tex = _FROST_CACHE[name]
    r0, c0 = np.random.randint(0, tex.shape[0] - 32), np.random.randint(0, tex.shape[1] - 32)
    crop = tex[r0 : r0 + 32, c0 : c0 + 32][..., [2, 1, 0]]
    return np.clip(c[0] * np.array(x) + c[1] * crop, 0, 255)


def fog(x: np.ndarray, s: int) -> np.ndarray:
    c = [(0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)][s - 1]
    x = x / 255.0
    top = x.max()
    x = x + c[0] * _plasma(decay=c[1])[:32, :32][..., np.newaxis]
    return np.clip(x * top / (top + c[0]), 0, 1) * 255


def spatter(x: np.ndarray, s: int) -> np.ndarray:
    c = [
        (0.62, 0.1, 0.7, 0.7, 0.5, 0),
        (0.65, 0.1, 0.8, 0.7, 0.5, 0),
        (0.65, 0.3, 1, 0.69, 0.5, 0),
        (0.65, 0.1, 0.7, 0.69, 0.6, 1),
        (0.65, 0.1, 0.5, 0.68, 0.6, 1),
    ][s - 1]
    x = np.array(x, dtype=np.float32) / 255.0
    liquid = gaussian(np.random.normal(size=x.shape[:2], loc=c[0], scale=c[1]), sigma=c[2])
    liquid[liquid < c[3]] = 0
    if c[5] == 0:
        liquid8 = (liquid * 255).astype(np.uint8)
        dist = cv2.distanceTransform(255 - cv2.Canny(liquid8, 50, 150), cv2.DIST_L2, 5)
        _, dist = cv2.threshold(dist, 20, 20, cv2.THRESH_TRUNC)
        dist = cv2.equalizeHist(cv2.blur(dist, (3, 3)).astype(np.uint8))
        ker = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]])
        dist = cv2.blur(cv2.filter2D(dist, cv2.CV_8U, ker), (3, 3)).astype(np.float32)
        m = cv2.cvtColor(liquid8 * dist, cv2.COLOR_GRAY2BGRA)
        m /= np.max(m, axis=(0, 1))
        m *= c[4]
        ones = np.ones_like(m[..., :1])
        color = np.concatenate((175 / 255.0 * ones, 238 / 255.0 * ones, 238 / 255.0 * ones), axis=2)
        color = cv2.cvtColor(color, cv2.COLOR_BGR2BGRA)
        x = cv2.cvtColor(x, cv2.COLOR_BGR2BGRA)
        return cv2.cvtColor(np.clip(x + m * color, 0, 1), cv2.COLOR_BGRA2BGR) * 255
    m = gaussian(np.where(liquid > c[3], 1, 0).astype(np.float32), sigma=c[4])
    m[m < 0.8] = 0
    ones = np.ones_like(x[..., :1])
    color = np.concatenate((63 / 255.0 * ones, 42 / 255.0 * ones, 20 / 255.0 * ones), axis=2)
    color *= m[..., np.newaxis]
    x *= 1 - m[..., np.newaxis]
    return np.clip(x + color, 0, 1) * 255


def contrast(x: np.ndarray, s: int) -> np.ndarray:
    c = [0.75, 0.5, 0.4, 0.3, 0.15][s - 1]
    x = x / 255.0
    m = x.mean(axis=(0, 1), keepdims=True)
    return np.clip((x - m) * c + m, 0, 1) * 255


def brightness(x: np.ndarray, s: int) -> np.ndarray:
    c = [0.05, 0.1, 0.15, 0.2, 0.3][s - 1]
    hsv = sk.color.rgb2hsv(x / 255.0)
    hsv[:, :, 2] = np.clip(hsv[:, :, 2] + c, 0, 1)
    return np.clip(sk.color.hsv2rgb(hsv), 0, 1) * 255


def saturate(x: np.ndarray, s: int) -> np.ndarray:
    c = [(0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)][s - 1]
    hsv = sk.color.rgb2hsv(x / 255.0)
    hsv[:, :, 1] = np.clip(hsv[:, :, 1] * c[0] + c[1], 0, 1)
    return np.clip(sk.color.hsv2rgb(hsv), 0, 1) * 255


def elastic_transform(x: np.ndarray, s: int) -> np.ndarray:
    size = 32
    c = [
        (size * 0, size * 0, size * 0.08),
        (size * 0.05, size * 0.2, size * 0.07),
        (size * 0.08, size * 0.06, size * 0.06),
        (size * 0.1, size * 0.04, size * 0.05),
        (size * 0.1, size * 0.03, size * 0.03),
    ][s - 1]
    img = np.array(x, dtype=np.float32) / 255.0
    shape = img.shape
    centre = np.float32(shape[:2]) // 2
    sq = min(shape[:2]) // 3
    pts1 = np.float32([centre + sq, [centre[0] + sq, centre[1] - sq], centre - sq])
    pts2 = pts1 + np.random.uniform(-c[2], c[2], size=pts1.shape).astype(np.float32)
    img = cv2.warpAffine(img, cv2.getAffineTransform(pts1, pts2), shape[:2][::-1], borderMode=cv2.BORDER_REFLECT_101)
    dx = (gaussian(np.random.uniform(-1, 1, size=shape[:2]), c[1], mode="reflect", truncate=3) * c[0]).astype(np.float32)
    dy = (gaussian(np.random.uniform(-1, 1, size=shape[:2]), c[1], mode="reflect", truncate=3) * c[0]).astype(np.float32)
    xx, yy, zz = np.meshgrid(np.arange(shape[1]), np.arange(shape[0]), np.arange(shape[2]))
    idx = (np.reshape(yy + dy[..., None], (-1, 1)), np.reshape(xx + dx[..., None], (-1, 1)), np.reshape(zz, (-1, 1)))
    return np.clip(map_coordinates(img, idx, order=1, mode="reflect").reshape(shape), 0, 1) * 255


def pixelate(x: np.ndarray, s: int) -> np.ndarray:
    c = [0.95, 0.9, 0.85, 0.75, 0.65][s - 1]
    im = Image.fromarray(x).resize((int(32 * c), int(32 * c)), Image.BOX).resize((32, 32), Image.BOX)
    return np.asarray(im)


def jpeg_compression(x: np.ndarray, s: int) -> np.ndarray:
    q = [80, 65, 58, 50, 40][s - 1]
    buf = BytesIO()
    Image.fromarray(x).save(buf, "JPEG", quality=q)
    return np.asarray(Image.open(buf))


REFERENCE: dict[str, Any] = {
    f.__name__: f
    for f in (
        gaussian_noise, shot_noise, impulse_noise, defocus_blur, glass_blur, motion_blur, zoom_blur, snow,
        frost, fog, brightness, contrast, elastic_transform, pixelate, jpeg_compression, speckle_noise,
        gaussian_blur, spatter, saturate,
    )
}


def reference_corrupt(images: np.ndarray, name: str, severity: int, frost_dir: str | Path | None = None) -> np.ndarray:
    """Apply the reference per image (loop), ``np.uint8`` of each result, like make_cifar_c.py."""
    fn = REFERENCE[name]
    out = np.empty_like(images)
    for i, img in enumerate(images):
        y = fn(img, severity, frost_dir) if name == "frost" else fn(img, severity)
        out[i] = np.uint8(y)
    return out
