"""Image inputs as the native module takes them: paths (str), encoded bytes, uint8 RGB arrays."""

from __future__ import annotations

import io
import os
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

# PIL modes a PNG stores losslessly, mode and palette included: such images are handed over
# encoded so that gclip decodes them into the same mode and runs the checkpoint's own
# colour-mode rules (open_clip resizes a P or RGBA image before converting it to RGB).
_PNG_MODES = {"1", "L", "LA", "P", "RGBA", "I;16"}


def is_pil_image(x: Any) -> bool:
    return type(x).__module__.startswith("PIL.") and hasattr(x, "mode") and hasattr(x, "size")


def is_single_image(x: Any) -> bool:
    """Whether ``x`` is one image rather than a sequence of them."""
    if isinstance(x, (str, bytes, bytearray, memoryview, os.PathLike)):
        return True
    if isinstance(x, np.ndarray):
        return x.ndim in (2, 3)
    return is_pil_image(x)


def as_image_list(images: Any) -> List[Any]:
    if is_single_image(images):
        return [images]
    if isinstance(images, np.ndarray):
        if images.ndim == 4:
            return list(images)
        raise ValueError(
            f"an image array must have shape (height, width, 3) or (n, height, width, 3), "
            f"got {images.shape}"
        )
    try:
        return list(images)
    except TypeError:
        raise TypeError(
            f"expected an image or a sequence of images, got {type(images).__name__}"
        ) from None


def _pil(img: Any, i: int) -> Tuple[Any, str]:
    mode = img.mode
    label = f"image {i} (PIL.Image, mode {mode})"
    if mode == "RGB":
        return np.ascontiguousarray(np.asarray(img, dtype=np.uint8)), label
    if mode in _PNG_MODES:
        buf = io.BytesIO()
        img.save(buf, format="PNG", compress_level=0)
        return buf.getvalue(), label
    # CMYK, YCbCr, I, F, HSV...: PIL's own conversion, as `Image.convert("RGB")` gives it.
    return np.ascontiguousarray(np.asarray(img.convert("RGB"), dtype=np.uint8)), label


def _array(a: np.ndarray, i: int) -> np.ndarray:
    if a.dtype != np.uint8:
        raise ValueError(
            f"image {i}: a pixel array must be uint8 (0..255), got {a.dtype}; preprocessed "
            f"float pixels go to Model.embed_pixels"
        )
    if a.ndim == 2:
        # Greyscale: PIL's L -> RGB conversion copies the value into each channel, and every
        # resize step works per channel, so this is what a mode-L image gives.
        a = np.repeat(a[:, :, None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(
            f"image {i}: a pixel array must have shape (height, width, 3), got {a.shape}; "
            f"pass an RGBA image as a PIL.Image"
        )
    return np.ascontiguousarray(a)


def to_native(images: Any) -> Tuple[List[Any], List[Optional[str]]]:
    """The native module's image items and, per item, a label for error messages."""
    out: List[Any] = []
    labels: List[Optional[str]] = []
    for i, x in enumerate(as_image_list(images)):
        label: Optional[str] = None
        if isinstance(x, str):
            item: Any = x
        elif isinstance(x, os.PathLike):
            item = os.fsdecode(os.fspath(x))
        elif isinstance(x, bytes):
            item = x
        elif isinstance(x, (bytearray, memoryview)):
            item = bytes(x)
        elif isinstance(x, np.ndarray):
            item = _array(x, i)
        elif is_pil_image(x):
            item, label = _pil(x, i)
        else:
            raise TypeError(
                f"image {i}: expected a path, bytes, a PIL.Image or a uint8 (height, width, 3) "
                f"array, got {type(x).__name__}"
            )
        out.append(item)
        labels.append(label)
    return out, labels


def is_text(x: Any) -> bool:
    """``gclip similarity``'s rule: a ``str`` is a text unless it names an existing file with an
    image extension; anything else (``pathlib.Path``, bytes, PIL images, arrays) is an image."""
    if not isinstance(x, str):
        return False
    return not (os.path.splitext(x)[1].lower() in IMAGE_EXTENSIONS and os.path.isfile(x))


IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff"}


def split_items(items: Sequence[Any]) -> Tuple[List[int], List[str], List[int], List[Any]]:
    """For mixed text/image sequences: positions and values of the texts and of the images
    (see :func:`is_text`)."""
    ti, texts, ii, imgs = [], [], [], []
    for k, x in enumerate(items):
        if is_text(x):
            ti.append(k)
            texts.append(x)
        else:
            ii.append(k)
            imgs.append(x)
    return ti, texts, ii, imgs
