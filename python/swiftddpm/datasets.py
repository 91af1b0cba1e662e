"""Data sets: small synthetic ones for examples and tests (pure numpy, float32, seeded), and
images from a folder with their sample grids (Pillow, imported only when used).

    sinusoids(n, dim)              (n, dim) sums of random sinusoids in [-1, 1]
    swiss_roll(n)                  (n, 2) the 2-D swiss roll
    image_folder(path, size=32)    (N, C, size, size) images in [-1, 1] [, labels, class names]
    save_grid(images, path)        (N, C, H, W) in [-1, 1] -> one PNG, written atomically
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import _files
from .errors import DDPMIOError, InvalidArgumentError

__all__ = ["image_folder", "save_grid", "sinusoids", "swiss_roll"]

# Standard deviation of the raw swiss roll below (per axis, pooled); dividing by it gives
# roughly unit variance whatever n is.
_SWISS_ROLL_SCALE = 6.79


def sinusoids(n: int, dim: int = 50, num_components: int = 3, seed: int = 0,
              freq_range: tuple[float, float] = (1.0, 5.0)) -> np.ndarray:
    """n random signals, each a weighted sum of sinusoids sampled on `dim` points of [0, 1).

    signal(x) = Σ_k w_k·sin(2π·f_k·x + φ_k), with f_k ~ U(freq_range), φ_k ~ U(0, 2π) and
    w_k ~ U(0.2, 1) normalised to Σ_k w_k = 1, so every value lies in [-1, 1].

    Returns float32 (n, dim).
    """
    if n < 1 or dim < 1 or num_components < 1:
        raise ValueError(f"n, dim and num_components must be >= 1 (got {n}, {dim}, {num_components})")
    rng = np.random.default_rng(seed)
    x = np.arange(dim) / dim  # (dim,) grid on [0, 1)
    freq = rng.uniform(*freq_range, size=(n, num_components, 1))  # (n, K, 1)
    phase = rng.uniform(0.0, 2 * np.pi, size=(n, num_components, 1))  # (n, K, 1)
    weight = rng.uniform(0.2, 1.0, size=(n, num_components, 1))  # (n, K, 1)
    weight /= weight.sum(axis=1, keepdims=True)  # Σ_k w_k = 1 keeps |signal| <= 1
    signals = (weight * np.sin(2 * np.pi * freq * x + phase)).sum(axis=1)  # (n, dim)
    return signals.astype(np.float32)


def swiss_roll(n: int, noise: float = 0.05, seed: int = 0) -> np.ndarray:
    """The 2-D swiss roll: t = 1.5π(1 + 2u), u ~ U(0, 1); (x, y) = (t·cos t, t·sin t).

    Scaled to roughly unit standard deviation, then Gaussian noise of std `noise` is
    added. Returns float32 (n, 2).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1 (got {n})")
    rng = np.random.default_rng(seed)
    t = 1.5 * np.pi * (1 + 2 * rng.random(n))  # (n,) angle along the roll
    points = np.stack([t * np.cos(t), t * np.sin(t)], axis=1) / _SWISS_ROLL_SCALE  # (n, 2)
    points += noise * rng.standard_normal((n, 2))
    return points.astype(np.float32)


# ---- Images -----------------------------------------------------------------------------

# image_folder refuses to allocate more than this many bytes of float32 images unless told to.
DEFAULT_MAX_BYTES = 4 * 2**30
_MAX_IMAGE_SIZE = 4096  # size in pixels of the square images image_folder makes
# The most pixels a source image may declare, by default, for output images of size×size:
# 32 MP at any size (a 24-MP camera's photo; about 128 MB decoded as RGBA), and beyond that a
# downscale of up to 64× per side. A 12000×12000 PNG of 424 KB would decode to 1.7 GB for 8×8.
_MIN_PIXEL_BOUND = 1 << 25
_MAX_DOWNSCALE = 64


def max_source_pixels(size: int) -> int:
    """The default bound on a source image's declared width × height for outputs of size×size."""
    return max(_MIN_PIXEL_BOUND, (_MAX_DOWNSCALE * size) ** 2)


def _pillow():
    """PIL.Image, or an ImportError that says how to install Pillow."""
    try:
        from PIL import Image, ImageOps
    except ImportError:
        raise ImportError("swiftddpm.datasets.image_folder and save_grid need Pillow: "
                          "pip install Pillow (or pip install 'swiftddpm[images]')") from None
    return Image, ImageOps


def _image_files(root: Path, extensions: set[str]) -> list[Path]:
    """Files under root (recursively, sorted, hidden files and folders skipped) whose suffix is
    one of `extensions` (lower case, with the dot). Linked folders are followed, each once."""
    found = []
    seen = set()
    for folder, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:  # a link back up the tree: do not loop
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))  # os.walk descends in this order
        found += [Path(folder) / f for f in sorted(files)
                  if not f.startswith(".") and os.path.splitext(f)[1].lower() in extensions]
    return found


def _load_image(path: Path, size: int, channels: int, max_pixels: int) -> np.ndarray:
    """One image file as float32 (channels, size, size) in [-1, 1]: EXIF orientation applied,
    transparency composited over white, the short side resized to `size` and the centre
    square kept (one Lanczos resampling of the centre square of the source).

    Only a regular file is opened (without blocking: a FIFO or a device named x.png is refused
    by its type, DDPMIOError), and the width × height its header declares is checked against
    max_pixels before any pixel is decoded (ValueError)."""
    Image, ImageOps = _pillow()
    fd = _files.open_regular(path, os.O_RDONLY, "image")
    with os.fdopen(fd, "rb") as f, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the bound below is ours
        with Image.open(f) as img:  # reads the header only
            w, h = img.size
            if w * h > max_pixels:
                raise ValueError(f"its header declares {w}×{h} = {w * h} pixels, over the bound of {max_pixels} "
                                 f"for {size}×{size} images (image_folder's max_pixels)")
            return _decode(img, size, channels, Image, ImageOps)


def _decode(img: Any, size: int, channels: int, Image: Any, ImageOps: Any) -> np.ndarray:
    """An opened image as float32 (channels, size, size) in [-1, 1] (see _load_image)."""
    img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):  # 16-bit grey: keep its precision
        img, full_scale = img.convert("F"), 65535.0
    else:
        if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            rgba = img.convert("RGBA")
            img = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
        img, full_scale = img.convert("L" if channels == 1 else "RGB"), 255.0
    w, h = img.size
    side = min(w, h)
    left, top = (w - side) / 2, (h - side) / 2  # the centre square, in source pixels
    img = img.resize((size, size), Image.Resampling.LANCZOS, box=(left, top, left + side, top + side))
    pixels = np.asarray(img, dtype=np.float32)  # (size, size) or (size, size, 3)
    pixels = pixels.reshape(size, size, -1).transpose(2, 0, 1)  # (c, size, size)
    if pixels.shape[0] != channels:  # a 16-bit grey image asked for in RGB
        pixels = np.repeat(pixels, channels, axis=0)
    return np.clip(pixels * (2.0 / full_scale) - 1.0, -1.0, 1.0)  # x = 2·v/max − 1 (Lanczos overshoots)


def image_folder(path: str | os.PathLike, size: int = 32, channels: int = 3, labels: bool = False, *,
                 on_error: str = "warn", max_bytes: int = DEFAULT_MAX_BYTES, max_pixels: int | None = None) -> Any:
    """Every image under the folder `path` (recursively) as one float32 array (N, C, size, size)
    in [-1, 1], ready for Model.fit with UNetConfig(channels=C, height=size, width=size).

    Files are those with an extension Pillow can open (.png, .jpg, .jpeg, .bmp, .gif, .webp,
    .tif, ...), in sorted path order; other files and hidden files/folders (".name") are
    ignored. Each image is converted to grey (channels=1) or RGB (channels=3) — transparency
    over white, EXIF rotation applied, 16-bit grey kept exact — then its short side is resized
    to `size` and the centre square kept (Lanczos), and the pixel values v in 0..255 become
    2·v/255 − 1.

    labels: False returns the images only. True also returns the class of each image from
        its first-level sub-folder (path/cat/..., path/dog/...): (images, labels, classes),
        with labels int32 (N,) indexing classes, the sorted list of sub-folder names. Every
        image must then be inside a class sub-folder, and every class sub-folder must hold
        at least one image.
    on_error: what to do with a file that has an image extension but does not open or decode
        (truncated, corrupt, not an image, not a regular file — a FIFO or a device is refused
        by its type, never read — or declaring more than max_pixels pixels): "warn" skips it
        with a RuntimeWarning naming it (the default; a large scraped folder often has a
        few), "raise" raises ValueError.
    max_pixels: the most pixels (width × height, as the file's header declares them) a source
        image may have, checked before it is decoded; default max_source_pixels(size): 32 MP,
        or a 64× downscale per side for sizes over 90.
    max_bytes: the largest array (N·C·size²·4 bytes, N counting every candidate file)
        allocated; more raises MemoryError before anything is loaded (default 4 GiB).

    Raises FileNotFoundError (no such folder), NotADirectoryError, ValueError (no images, or
    every one failed), InvalidArgumentError (size, channels, on_error, max_bytes), ImportError
    (Pillow is not installed).
    """
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not 1 <= size <= _MAX_IMAGE_SIZE:
        raise InvalidArgumentError(f"size must be an int in 1..{_MAX_IMAGE_SIZE} (got {size!r})")
    if isinstance(channels, bool) or channels not in (1, 3):
        raise InvalidArgumentError(f"channels must be 1 (grey) or 3 (RGB) (got {channels!r})")
    if on_error not in ("warn", "raise"):
        raise InvalidArgumentError(f"on_error must be 'warn' or 'raise' (got {on_error!r})")
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, (int, np.integer)) or max_bytes < 1:
        raise InvalidArgumentError(f"max_bytes must be a positive int (got {max_bytes!r})")
    if max_pixels is not None and (isinstance(max_pixels, bool) or not isinstance(max_pixels, (int, np.integer))
                                   or max_pixels < 1):
        raise InvalidArgumentError(f"max_pixels must be a positive int or None (got {max_pixels!r})")
    size, channels = int(size), int(channels)
    max_pixels = max_source_pixels(size) if max_pixels is None else int(max_pixels)
    Image, _ = _pillow()
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"image folder {str(root)!r} does not exist")
    if not root.is_dir():
        raise NotADirectoryError(f"{str(root)!r} is not a folder (image_folder wants a folder of images)")
    extensions = {ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}
    files = _image_files(root, extensions)
    if not files:
        raise ValueError(f"no image files under {str(root)!r} (looked for {', '.join(sorted(extensions)[:12])}, ...)")

    classes: list[str] = []
    class_of: list[int] = []
    if labels:
        top = [f.relative_to(root).parts for f in files]
        loose = [str(f) for f, parts in zip(files, top) if len(parts) == 1]
        if loose:
            raise ValueError(f"labels=True takes each image's class from its sub-folder of {str(root)!r}, but "
                             f"{len(loose)} image(s) lie directly in it, e.g. {loose[0]!r}")
        classes = sorted({parts[0] for parts in top})
        index = {name: k for k, name in enumerate(classes)}
        class_of = [index[parts[0]] for parts in top]
        empty = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")
                       and d.name not in index)
        if empty:
            raise ValueError(f"class folder(s) with no images under {str(root)!r}: {', '.join(empty)}")

    nbytes = len(files) * channels * size * size * 4
    if nbytes > max_bytes:
        raise MemoryError(f"{len(files)} images of {channels}×{size}×{size} float32 need {nbytes / 2**20:.0f} MiB, "
                          f"over max_bytes = {max_bytes / 2**20:.0f} MiB (pass a larger max_bytes, or a smaller size)")
    images = np.empty((len(files), channels, size, size), dtype=np.float32)  # (N, C, size, size)
    kept: list[int] = []
    for i, file in enumerate(files):
        try:
            images[len(kept)] = _load_image(file, size, channels, max_pixels)
        except (OSError, ValueError, Image.DecompressionBombError, SyntaxError) as error:
            message = f"cannot read image {str(file)!r}: {type(error).__name__}: {error}"
            if on_error == "raise":
                raise ValueError(message) from error
            warnings.warn(message + " (skipped)", RuntimeWarning, stacklevel=2)
            continue
        kept.append(i)
    if not kept:
        raise ValueError(f"none of the {len(files)} image files under {str(root)!r} could be read")
    if len(kept) < len(files):
        images = images[: len(kept)].copy()
    if not labels:
        return images
    return images, np.asarray([class_of[i] for i in kept], dtype=np.int32), classes


def _grid(images: np.ndarray, nrow: int, padding: int, pad_value: float) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] -> uint8 (rows·(H+p)+p, nrow·(W+p)+p, C): the images left to right,
    top to bottom, `padding` pixels of pad_value (in [-1, 1]) around each."""
    n, c, h, w = images.shape
    rows = -(-n // nrow)
    pixels = np.rint((np.clip(images, -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8)  # v = round((x+1)·255/2)
    fill = int(np.rint((np.clip(pad_value, -1.0, 1.0) + 1.0) * 127.5))
    canvas = np.full((rows * (h + padding) + padding, nrow * (w + padding) + padding, c), fill, dtype=np.uint8)
    for k in range(n):
        r, col = divmod(k, nrow)
        y, x = padding + r * (h + padding), padding + col * (w + padding)
        canvas[y:y + h, x:x + w] = pixels[k].transpose(1, 2, 0)
    return canvas


def _labelled(picture: Any, texts: list[str], row_height: int, padding: int, fill: int) -> Any:
    """The grid picture with a margin on its left holding texts[r] beside row r (black, the
    default bitmap font, centred on the row's height)."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    measure = ImageDraw.Draw(picture)
    boxes = [measure.textbbox((0, 0), t, font=font) for t in texts]  # (left, top, right, bottom)
    margin = max(b[2] - b[0] for b in boxes) + 2 * padding + 2
    out = Image.new(picture.mode, (picture.width + margin, picture.height), (fill,) * len(picture.getbands()))
    out.paste(picture, (margin, 0))
    draw, ink = ImageDraw.Draw(out), (0,) * len(picture.getbands())
    for r, (text, box) in enumerate(zip(texts, boxes)):
        y = padding + r * row_height + (row_height - padding - (box[3] - box[1])) // 2 - box[1]
        draw.text((padding - box[0], y), text, font=font, fill=ink if len(ink) > 1 else ink[0])
    return out


def save_grid(images: Any, path: str | os.PathLike, nrow: int | None = None, *, padding: int = 2,
              pad_value: float = 1.0, row_labels: Sequence[str] | None = None) -> Path:
    """Writes images (N, C, H, W) with values in [-1, 1] (C = 1 grey or 3 RGB; values outside
    are clipped) as one PNG grid of `nrow` images per row (default ⌈√N⌉), `padding` pixels of
    pad_value between them (1.0 = white). row_labels: one text per row (e.g. class names),
    written in black in a margin left of the row. The file is written atomically: a temporary
    file in the same folder, renamed over `path`, so a reader (or a crash) never sees half a
    PNG (a link at `path` is replaced, never written through; a folder there is DDPMIOError).
    Pixel values map as v = round((x + 1)·127.5). Returns the path."""
    Image, _ = _pillow()
    arr = np.asarray(images, dtype=np.float32)
    if arr.ndim != 4 or arr.shape[0] < 1 or arr.shape[1] not in (1, 3) or 0 in arr.shape:
        raise InvalidArgumentError(f"images must be (N, C, H, W) with N >= 1 and C 1 or 3 (got shape {arr.shape})")
    if not np.isfinite(arr).all():
        raise InvalidArgumentError("images contain NaN or infinity")
    n = arr.shape[0]
    nrow = int(np.ceil(np.sqrt(n))) if nrow is None else nrow
    if isinstance(nrow, bool) or not isinstance(nrow, (int, np.integer)) or nrow < 1:
        raise InvalidArgumentError(f"nrow must be a positive int (got {nrow!r})")
    if isinstance(padding, bool) or not isinstance(padding, (int, np.integer)) or padding < 0:
        raise InvalidArgumentError(f"padding must be an int >= 0 (got {padding!r})")
    canvas = _grid(arr, min(int(nrow), n), int(padding), float(pad_value))
    picture = Image.fromarray(canvas[:, :, 0] if canvas.shape[2] == 1 else canvas)  # uint8: "L" or "RGB"
    if row_labels is not None:
        rows = -(-n // min(int(nrow), n))
        if isinstance(row_labels, str) or len(row_labels) != rows:
            raise InvalidArgumentError(f"row_labels must be a list of {rows} texts, one per row "
                                       f"(got {row_labels!r})")
        picture = _labelled(picture, [str(t) for t in row_labels], arr.shape[2] + int(padding), int(padding),
                            int(canvas[0, 0, 0]))
    png = io.BytesIO()
    picture.save(png, format="PNG")
    return _files.write_atomic(Path(path), [png.getbuffer()], "sample grid")
