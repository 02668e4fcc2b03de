"""Image files: Pillow for everything, pypng where Pillow would drop bits (16-bit RGB/RGBA PNG).

Outputs are written to a temporary file beside the target and renamed into place, so a crash, a full disk or
Ctrl-C never leaves a half-written image, and an existing file is replaced only by a complete one.
"""
from __future__ import annotations

import functools
import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import png
from PIL import Image, UnidentifiedImageError

from .errors import DreamError

_PNG16 = {"RGB;16B": 3, "RGBA;16B": 4, "LA;16B": 2}


def _too_large(path: Path, size: str, most: int) -> DreamError:
    return DreamError(f"{path} is {size}, more than the {most:,} pixels luciddream reads at most: crop or scale "
                      f"it down first.")


def _most_pixels(max_pixels: int | None) -> int:
    """The largest image read: `max_pixels`, but never more than Pillow opens (twice its MAX_IMAGE_PIXELS)."""
    pillow = 2 * Image.MAX_IMAGE_PIXELS if Image.MAX_IMAGE_PIXELS else None
    if max_pixels is None:
        return pillow or 2 ** 62
    return min(max_pixels, pillow) if pillow else max_pixels


_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF8", b"II*\0", b"MM\0*", b"BM")


def _looks_like_an_image(path: Path) -> bool:
    """Does the file start like a PNG, JPEG, GIF, TIFF or BMP (so that Pillow's refusal means it is damaged)?"""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError:
        return False
    return head.startswith(_SIGNATURES) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")


def _open(path: Path, max_pixels: int | None = None) -> tuple[Image.Image, object]:
    """The decoded image and its raw PNG sample layout (known only before decoding).

    The size is checked from the file's header, before any pixel is decoded: a 30000×30000 file or a
    decompression bomb is refused without allocating its gigabytes.
    """
    if not path.exists():
        raise DreamError(f"{path}: no such file; check the path.")
    if path.is_dir():
        raise DreamError(f"{path} is a folder, not an image file.")
    most = _most_pixels(max_pixels)
    try:
        im = Image.open(path)
    except Image.DecompressionBombError as exc:  # over Pillow's own guard, which it checks inside open()
        found = re.search(r"\((\d+) pixels\)", str(exc))
        raise _too_large(path, f"{int(found.group(1)):,} pixels" if found else "too large", most) from None
    except UnidentifiedImageError:
        if _looks_like_an_image(path):
            raise DreamError(f"{path} is damaged or truncated and cannot be read (its header is broken); re-export "
                             f"it.") from None
        raise DreamError(f"{path} is not an image Pillow can read; save it as PNG, JPEG or TIFF.") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise DreamError(f"{path} is damaged or truncated and cannot be read ({exc}); re-export it.") from None
    width, height = im.size
    if width * height > most:
        im.close()
        raise _too_large(path, f"{width}×{height} pixels", most)
    try:
        raw = im.tile[0].args if im.tile else None
        im.load()
        return im, raw
    except (OSError, SyntaxError, ValueError) as exc:
        raise DreamError(f"{path} is damaged or truncated and cannot be read ({exc}); re-export it.") from None


def _png16(path: Path, channels: int) -> np.ndarray:
    width, height, rows, info = png.Reader(filename=str(path)).asDirect()
    data = np.vstack([np.asarray(r, dtype=np.uint16) for r in rows])
    return data.reshape(height, width, info["planes"])


def _quiet(read: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
    """Pillow warns about damaged metadata, big images and palette quirks: on the command line that would be lines
    of noise around the one sentence that matters, so a reader says what it has to say in its result or error."""
    @functools.wraps(read)
    def quietly(*args: Any, **kwargs: Any) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return read(*args, **kwargs)
    return quietly


@_quiet
def read_image(path: str | os.PathLike, max_pixels: int | None = None) -> np.ndarray:
    """The file as uint8, uint16 or float32; gray (H, W), gray+alpha, RGB or RGBA (H, W, C).

    `max_pixels`: refuse a larger image before decoding it (default: Pillow's decompression-bomb guard)."""
    path = Path(path)
    im, raw = _open(path, max_pixels)
    if im.format == "PNG" and isinstance(raw, str) and raw in _PNG16:
        try:
            return _png16(path, _PNG16[raw])
        except (png.Error, OSError, ValueError) as exc:
            raise DreamError(f"{path} is damaged or truncated and cannot be read ({exc}); re-export it.") from None
    mode = im.mode
    if mode in ("L", "LA", "RGB", "RGBA"):
        return np.array(im)
    if mode.startswith("I;16"):
        return np.array(im).astype(np.uint16)
    if mode == "I":
        return np.clip(np.array(im), 0, 65535).astype(np.uint16)
    if mode == "F":
        return np.array(im, dtype=np.float32)
    if mode == "1":
        return np.array(im.convert("L"))
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in im.info
        return np.array(im.convert("RGBA" if has_alpha else "RGB"))
    return np.array(im.convert("RGBA" if "A" in mode else "RGB"))


@_quiet
def read_mask(path: str | os.PathLike, max_pixels: int | None = None) -> np.ndarray:
    """A selection mask read as gray, white = dream: float32 in [0, 1]."""
    path = Path(path)
    im, _ = _open(path, max_pixels)
    if im.mode.startswith("I;16") or im.mode == "I":
        return np.clip(np.array(im), 0, 65535).astype(np.float32) / 65535.0
    if im.mode == "F":
        return np.clip(np.array(im, dtype=np.float32), 0.0, 1.0)
    if im.mode in ("LA", "RGBA", "PA") or "transparency" in im.info:
        im = im.convert("RGBA").convert("L") if im.mode != "LA" else im.convert("L")
    return np.array(im.convert("L"), dtype=np.float32) / 255.0


def _format_for(path: Path) -> str:
    ext = path.suffix.lower()
    formats = Image.registered_extensions()
    if ext not in formats:
        raise DreamError(f"{path}: unknown output format \"{ext or '(none)'}\"; use .png, .jpg, .tif or .webp.")
    return formats[ext]


def _to8(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.uint16:
        return ((a.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    return np.rint(np.clip(a, 0.0, 1.0) * 255).astype(np.uint8)


def _to16(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.uint16:
        return a
    if a.dtype == np.uint8:
        return a.astype(np.uint16) * 257
    return np.rint(np.clip(a, 0.0, 1.0) * 65535).astype(np.uint16)


def _save(image: np.ndarray, fmt: str, handle) -> None:
    channels = 1 if image.ndim == 2 else image.shape[2]
    if fmt == "PNG" and image.dtype != np.uint8:
        data = _to16(image)
        mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[channels]
        png.Writer(data.shape[1], data.shape[0], greyscale=mode.startswith("L"), alpha=mode.endswith("A"),
                   bitdepth=16).write(handle, data.reshape(data.shape[0], -1))
        return
    if fmt == "TIFF" and image.dtype == np.float32 and channels == 1:
        Image.fromarray(image[:, :, 0] if image.ndim == 3 else image, mode="F").save(handle, format=fmt)
        return
    data = _to8(image)
    if data.ndim == 3 and data.shape[2] == 1:
        data = data[:, :, 0]
    if fmt == "JPEG" and channels in (2, 4):
        raise DreamError("JPEG cannot store the alpha channel of this image: write a .png instead.")
    Image.fromarray(data).save(handle, format=fmt, **({"quality": 95} if fmt in ("JPEG", "WEBP") else {}))


def check_output(path: str | os.PathLike) -> str:
    """Refuse an output path that cannot work before any time is spent dreaming; returns the format."""
    path = Path(path)
    fmt = _format_for(path)
    folder = path.parent
    if not folder.is_dir():
        raise DreamError(f"{path}: the folder {folder} does not exist; create it or choose another output path.")
    if path.is_dir():
        raise DreamError(f"{path} is a folder; give a file name such as {path / 'dream.png'}.")
    try:  # try for real: os.access says yes to root, and knows nothing of read-only mounts or full quotas
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=folder)
    except OSError as exc:
        raise DreamError(f"{path}: the folder {folder} is not writable ({exc.strerror or exc}); choose another "
                         f"output path.") from None
    os.close(fd)
    os.unlink(probe)
    return fmt


def write_image(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write atomically; 16-bit and float data stay 16-bit in PNG."""
    path = Path(path)
    fmt = check_output(path)
    folder = path.parent
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=folder)
    except OSError as exc:
        raise DreamError(f"{path}: cannot write in {folder} ({exc.strerror}); choose a writable folder.") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            _save(image, fmt, handle)
            handle.flush()
            os.fsync(handle.fileno())
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o777)
        else:
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as exc:
        os.unlink(tmp)
        raise DreamError(f"{path}: writing failed ({exc.strerror or exc}); nothing was written.") from None
    except BaseException:
        os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
