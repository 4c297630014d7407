"""Decoding image files into fixed-size RGB arrays, robustly and deterministically.

The container format is detected from the file's bytes, not its name (a PNG named ``.JPEG``
decodes as the PNG it is). EXIF orientation is applied; CMYK, grayscale, palette, 16-bit and
alpha images are converted to 8-bit RGB (alpha composited on white). Files that cannot be decoded
raise :class:`BadImageError` naming the path and the reason.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from litequant.core.quiet import progress_counter

#: File name endings that are treated as images when scanning folders (case-insensitive).
IMAGE_SUFFIXES = frozenset({".jpeg", ".jpg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})

#: The central fraction of the image kept before resizing (the usual ImageNet evaluation crop).
CENTRAL_CROP_FRACTION = 0.875


class BadImageError(Exception):
    """A file that should be an image but cannot be decoded into one."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def looks_like_image(path: str | os.PathLike) -> bool:
    """True for a non-hidden file whose name ends in a known image suffix."""
    name = Path(path).name
    return not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        values = np.asarray(image, dtype=np.int64)
        peak = 65535 if image.mode.startswith("I;16") or values.max(initial=0) > 255 else 255
        gray = np.clip(np.round(values * (255.0 / peak)), 0, 255).astype(np.uint8)
        return Image.fromarray(gray, mode="L").convert("RGB")
    if image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        gray = np.clip(np.round(values), 0, 255).astype(np.uint8)
        return Image.fromarray(gray, mode="L").convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode != "RGB":
        return image.convert("RGB")
    return image


#: The smallest image side (pixels) worth classifying: the smallest input the keras.applications
#: ImageNet classifiers accept (32x32). A smaller image, upscaled to the model's input, is a blur
#: of a few pixels whose "accuracy" would be noise; it is a bad image (skipped and listed, or
#: refused with ``fetch.on_bad_image: fail``).
MIN_IMAGE_SIDE = 32


def decode_rgb(source: str | os.PathLike | bytes) -> Image.Image:
    """Decode an image file (or its bytes) fully into an upright 8-bit RGB PIL image.

    Raises:
        BadImageError: empty, truncated, corrupt or non-image file, an image too large to
            decode safely, or one smaller than :data:`MIN_IMAGE_SIDE` on a side.
    """
    is_bytes = isinstance(source, (bytes, bytearray))
    path = "<bytes>" if is_bytes else Path(source)
    try:
        if (len(source) if is_bytes else path.stat().st_size) == 0:
            raise BadImageError(path, "empty file (0 bytes)")
        with Image.open(io.BytesIO(source) if is_bytes else path) as opened:
            opened.load()
            upright = ImageOps.exif_transpose(opened)
            rgb = _to_rgb(upright)
            rgb.load()
        if min(rgb.size) < MIN_IMAGE_SIDE:
            raise BadImageError(path, f"too small to classify ({rgb.size[0]}x{rgb.size[1]} "
                                      f"pixels; at least {MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE}, the "
                                      "smallest input of the ImageNet classifiers)")
        return rgb
    except BadImageError:
        raise
    except UnidentifiedImageError:
        raise BadImageError(path, "not a recognised image format") from None
    except Image.DecompressionBombError as error:
        raise BadImageError(path, f"image too large to decode safely ({error})") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise BadImageError(path, f"cannot decode ({error})") from None


def load_resized(path: str | os.PathLike, size: tuple[int, int],
                 crop_fraction: float = CENTRAL_CROP_FRACTION) -> np.ndarray:
    """Decode, central-crop and resize one image.

    Args:
        path: the image file (any format PIL reads; the name's suffix is not trusted).
        size: ``(height, width)`` of the result.
        crop_fraction: fraction of each side kept around the centre before resizing.

    Returns:
        ``uint8`` array of shape ``(height, width, 3)``, RGB, values 0..255.
    """
    image = decode_rgb(path)
    width, height = image.size
    crop_w, crop_h = width * crop_fraction, height * crop_fraction
    left, top = (width - crop_w) / 2.0, (height - crop_h) / 2.0
    box = (left, top, left + crop_w, top + crop_h)
    resized = image.resize((size[1], size[0]), Image.Resampling.BILINEAR, box=box)
    return np.asarray(resized, dtype=np.uint8)


#: Images decoded per chunk by :func:`decode_chunks`: enough to keep every core busy, small
#: enough (about 10 MB at 224x224) that memory does not depend on the number of images.
DECODE_CHUNK = 64


def decode_chunks(paths: list[Path] | list[str], size: tuple[int, int], description: str,
                  chunk: int = DECODE_CHUNK, root: Path | None = None) -> Iterator[np.ndarray]:
    """Decode ``paths`` (relative to ``root`` when given) with :func:`load_resized`, in order,
    on all cores, ``chunk`` at a time.

    Yields ``uint8`` ``(<= chunk, height, width, 3)`` arrays, RGB 0..255, in the order of
    ``paths``; only one chunk is decoded at a time, so memory does not grow with ``len(paths)``.
    Shows images/s and the ETA on a terminal. Raises :class:`BadImageError`.
    """
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool, \
            progress_counter(description, len(paths)) as update:
        for start in range(0, len(paths), chunk):
            batch = paths[start:start + chunk]
            images = np.empty((len(batch), size[0], size[1], 3), dtype=np.uint8)
            if root is not None:
                batch = [Path(root) / path for path in batch]
            for index, pixels in enumerate(pool.map(lambda p: load_resized(p, size), batch)):
                images[index] = pixels
            update(len(batch))
            yield images
