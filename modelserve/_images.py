"""Turning what users pass as an image into an ``HxWx3`` uint8 array.

Accepted: a path (``str`` / ``os.PathLike``) of a regular file, encoded ``bytes``, a
``PIL.Image.Image``, or a numpy uint8 array shaped ``HxW`` (grayscale), ``HxWx1``, ``HxWx3`` or
``HxWx4`` (alpha dropped). Files and bytes are decoded with their EXIF orientation applied: JPEGs
by libjpeg-turbo through ``simplejpeg`` (BGR, the pixels OpenCV's ``imdecode`` gives, see
``_jpeg.py``), everything else by Pillow (RGB). Numpy arrays are BGR by default, as OpenCV gives
them; pass ``channels="rgb"`` for RGB arrays. Anything that goes wrong while decoding (a corrupt
file, a FIFO or device given as a path, a closed PIL image, a decoder that another library patched
and that fails) raises :class:`InvalidInputError` with the cause chained; a path is never opened in
a way that can block.
"""

from __future__ import annotations

import io
import os
from typing import IO, Any, NamedTuple

import numpy as np

from . import _files, _jpeg
from ._errors import InvalidInputError

__all__ = ["Image", "load_image", "is_single_image"]


class Image(NamedTuple):
    """A decoded image: ``pixels`` is C-contiguous ``HxWx3`` uint8; ``bgr`` tells the channel order.
    ``orig_hw``: the image's real size when ``pixels`` was decoded smaller (a DCT-scaled JPEG,
    ``fast_decode``); None when ``pixels`` is the image at its size."""

    pixels: np.ndarray
    bgr: bool
    orig_hw: tuple[int, int] | None = None

    @property
    def hw(self) -> tuple[int, int]:
        """The image's size, ``(height, width)``: what results are in."""
        return self.orig_hw or (int(self.pixels.shape[0]), int(self.pixels.shape[1]))

    def full_pixels(self) -> np.ndarray:
        """``pixels`` at the image's size (a scaled decode resized back up, bilinear, for pictures)."""
        if self.orig_hw is None or self.orig_hw == self.pixels.shape[:2]:
            return self.pixels
        from PIL import Image as PILImage

        h, w = self.orig_hw
        return np.asarray(PILImage.fromarray(self.pixels).resize((w, h), PILImage.Resampling.BILINEAR))


def is_single_image(obj: Any) -> bool:
    """True for one image, False for a list/tuple of images (the batch form of ``predict``)."""
    return not isinstance(obj, (list, tuple))


def _decode_pil(img: Any, what: str) -> Image:
    from PIL import Image as PILImage
    from PIL import ImageOps

    try:
        img.load()
        img = ImageOps.exif_transpose(img)
        if img is None:  # a patched Pillow may return None here
            raise ValueError("exif_transpose returned no image")
        if img.mode != "RGB":
            if img.mode in ("I;16", "I;16B", "I;16L", "I"):
                # 16/32-bit grayscale: keep the top 8 bits instead of clipping everything to 255.
                arr = np.asarray(img).astype(np.float64)
                peak = 65535.0 if img.mode.startswith("I;16") else max(float(arr.max()), 1.0)
                gray = np.clip(arr * (255.0 / peak), 0, 255).astype(np.uint8)
                return Image(np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=2)), bgr=False)
            img = img.convert("RGB")
        pixels = np.asarray(img, dtype=np.uint8)
    except PILImage.DecompressionBombError as exc:
        raise InvalidInputError(f"refusing to decode {what}: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a bad image, typed and chained
        raise InvalidInputError(f"cannot decode {what}: {type(exc).__name__}: {exc}") from exc
    if pixels.ndim != 3 or pixels.shape[0] == 0 or pixels.shape[1] == 0:
        raise InvalidInputError(f"{what} decoded to an empty image of shape {pixels.shape}")
    return Image(np.ascontiguousarray(pixels), bgr=False)


def _not_an_image_file(message: str) -> InvalidInputError:
    return InvalidInputError(f"expected an image file: {message}")


def _open_file(path: str) -> IO[bytes]:
    """Open ``path`` for reading if it is a regular file, without blocking
    (``modelserve._files``): a FIFO, device, socket or directory is refused, never read."""
    try:
        return _files.open_read(path, refuse=_not_an_image_file)
    except FileNotFoundError as exc:
        raise InvalidInputError(f"image file not found: {path}") from exc
    except OSError as exc:
        raise InvalidInputError(f"cannot open image file {path!r}: {exc}") from exc


def _jpeg_image(data: bytes, what: str, target: Any) -> Image | None:
    """``data`` decoded by libjpeg-turbo (``_jpeg``), or None where that does not apply."""
    decoded = _jpeg.decode(data, what, target=target)
    if decoded is None:
        return None
    pixels, hw = decoded
    return Image(pixels, True, None if hw == pixels.shape[:2] else hw)


def _open_path(path: str, what: str, target: Any) -> Image:
    """Decode an image file: a JPEG by libjpeg-turbo, else (or where that does not apply) by Pillow."""
    fh = _open_file(path)
    try:
        magic = fh.read(3)
        if not (_jpeg.is_jpeg(magic) and _jpeg.available()):
            fh.seek(0)
            return _open(fh, what)
        data = magic + fh.read()
    except OSError as exc:
        fh.close()
        raise InvalidInputError(f"cannot read {what}: {exc}") from exc
    fh.close()
    return _jpeg_image(data, what, target) or _open(io.BytesIO(data), what)


def _open(source: Any, what: str) -> Image:
    """Decode a file object by Pillow (closed on the way out)."""
    from PIL import Image as PILImage

    try:
        with source, PILImage.open(source) as img:
            return _decode_pil(img, what)
    except InvalidInputError:
        raise
    except PILImage.DecompressionBombError as exc:
        raise InvalidInputError(f"refusing to decode {what}: {exc}") from exc
    except (PILImage.UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise InvalidInputError(f"cannot decode {what}: not a supported image ({exc})") from exc
    except Exception as exc:  # noqa: BLE001 - e.g. a PIL.Image.open replaced by another library
        raise InvalidInputError(f"cannot decode {what}: {type(exc).__name__}: {exc}") from exc


def _from_array(arr: np.ndarray, channels: str) -> Image:
    if arr.dtype != np.uint8:
        raise InvalidInputError(
            f"image arrays must be uint8 (0-255), got {arr.dtype}; convert with (x * 255).astype(np.uint8) "
            "if you have floats in 0-1"
        )
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 2:
        if arr.size == 0:
            raise InvalidInputError(f"image must have a non-zero size, got shape {arr.shape}")
        return Image(np.ascontiguousarray(np.repeat(arr[:, :, None], 3, axis=2)), bgr=True)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise InvalidInputError(f"image arrays must be HxW, HxWx1, HxWx3 or HxWx4, got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InvalidInputError(f"image must have a non-zero size, got shape {arr.shape}")
    return Image(np.ascontiguousarray(arr[:, :, :3]), bgr=(channels == "bgr"))


_U8 = np.dtype(np.uint8)


def load_image(source: Any, channels: str = "bgr", target: Any = None) -> Image:
    """Decode one image from any accepted form; raises :class:`InvalidInputError` otherwise.

    ``target``: for a JPEG path or bytes, ``target((h, w)) -> (th, tw)``, the smallest size the
    caller needs of an image of size ``(h, w)``: the JPEG is then decoded at 1/2, 1/4 or 1/8 when
    that still covers it (``Image.orig_hw`` keeps the real size). Other sources ignore it."""
    if channels not in ("bgr", "rgb"):
        raise InvalidInputError(f"channels must be 'bgr' or 'rgb', got {channels!r}")
    if isinstance(source, np.ndarray):
        if source.dtype is _U8 and source.ndim == 3 and source.shape[2] == 3 and source.flags.c_contiguous:
            return Image(source, channels == "bgr")  # the common case, as OpenCV gives frames
        return _from_array(source, channels)
    if isinstance(source, (str, os.PathLike)):
        return _open_path(os.fspath(source), f"image file {os.fspath(source)!r}", target)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if not data:
            raise InvalidInputError("cannot decode image bytes: got 0 bytes")
        what = f"image bytes ({len(data)} bytes)"
        return _jpeg_image(data, what, target) or _open(io.BytesIO(data), what)
    from PIL import Image as PILImage

    if isinstance(source, PILImage.Image):
        if source.width == 0 or source.height == 0:
            raise InvalidInputError(f"image must have a non-zero size, got {source.size}")
        try:
            copy = source.copy()
        except Exception as exc:  # noqa: BLE001 - e.g. "Operation on closed image"
            raise InvalidInputError(f"cannot read PIL image: {type(exc).__name__}: {exc}") from exc
        return _decode_pil(copy, "PIL image")
    raise InvalidInputError(
        "an image must be a path, bytes, a PIL.Image or a uint8 numpy array, " f"got {type(source).__name__}"
    )
