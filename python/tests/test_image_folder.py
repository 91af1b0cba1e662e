"""datasets.image_folder and datasets.save_grid on folders of PNG/JPEG files the tests write
themselves. Expected pixel values come from the definition (v ↦ 2·v/255 − 1, ITU-R 601 luma,
the centre square of the source), not from the loader's code."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

PIL = pytest.importorskip("PIL", reason="image folders need Pillow (make setup-python installs it)")
from PIL import Image  # noqa: E402

from swiftddpm import datasets  # noqa: E402
from swiftddpm.errors import InvalidArgumentError  # noqa: E402

from conftest import REPO  # noqa: E402

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def solid(path, size, colour, mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, colour).save(path)
    return path


def scaled(v):
    """The loader's value of an 8-bit pixel value v: 2·v/255 − 1."""
    return 2.0 * np.asarray(v, dtype=np.float64) / 255.0 - 1.0


@pytest.fixture
def two_classes(tmp_path):
    """root/cats: 3 PNGs (16×16, 16×12 and 10×16), root/dogs: 2 JPEGs and one in a nested folder;
    beside them a text file, a hidden file and a hidden folder, which are not images."""
    root = tmp_path / "images"
    solid(root / "cats" / "a.png", (16, 16), (200, 10, 10))
    solid(root / "cats" / "b.png", (16, 12), (10, 200, 10))
    solid(root / "cats" / "c.png", (10, 16), (10, 10, 200))
    for i in range(2):
        solid(root / "dogs" / f"{i}.jpg", (16, 16), (128, 128, 128))
    solid(root / "dogs" / "puppies" / "p.jpeg", (12, 12), (128, 128, 128))
    (root / "dogs" / "notes.txt").write_text("not an image")
    solid(root / "cats" / ".hidden.png", (16, 16), RED)
    solid(root / ".cache" / "x.png", (16, 16), RED)
    return root


def test_shapes_range_and_labels(two_classes):
    x, labels, classes = datasets.image_folder(two_classes, size=8, channels=3, labels=True)
    assert x.shape == (6, 3, 8, 8) and x.dtype == np.float32 and x.flags.c_contiguous
    assert classes == ["cats", "dogs"]
    assert labels.dtype == np.int32 and labels.tolist() == [0, 0, 0, 1, 1, 1]  # sorted paths; nested counts as dogs
    assert -1.0 <= x.min() and x.max() <= 1.0
    # PNG is lossless and a solid colour stays solid through any resize: exactly 2·v/255 − 1.
    for k, colour in enumerate([(200, 10, 10), (10, 200, 10), (10, 10, 200)]):
        np.testing.assert_allclose(x[k], np.broadcast_to(scaled(colour)[:, None, None], (3, 8, 8)), atol=1e-6)
    # JPEG is lossy: a mid grey comes back within a couple of levels.
    np.testing.assert_allclose(x[3:], scaled(128), atol=2.5 * 2 / 255)
    assert np.array_equal(datasets.image_folder(two_classes, size=8, channels=3), x)  # labels=False: images only


def test_centre_crop_of_wide_and_tall_images(tmp_path):
    # 48×24: red quarter | green half | blue quarter. The short side is 24, the centre square all green.
    wide = np.zeros((24, 48, 3), np.uint8)
    wide[:, :12] = RED
    wide[:, 12:36] = GREEN
    wide[:, 36:] = BLUE
    Image.fromarray(wide).save(tmp_path / "wide.png")
    Image.fromarray(wide.transpose(1, 0, 2).copy()).save(tmp_path / "tall.png")  # 24×48, bands top to bottom
    same = datasets.image_folder(tmp_path, size=24)  # no resize: exactly the centre square
    np.testing.assert_array_equal(same, np.broadcast_to(scaled(GREEN)[None, :, None, None], (2, 3, 24, 24)))
    # Resized by 3, the Lanczos filter reaches one output pixel past the crop, and rings by one level.
    x = datasets.image_folder(tmp_path, size=8)
    green, level = scaled(GREEN)[:, None, None], 2 / 255
    np.testing.assert_allclose(x[0][:, 1:-1, :], np.broadcast_to(green, (3, 6, 8)), atol=1.01 * level)  # tall: rows
    np.testing.assert_allclose(x[1][:, :, 1:-1], np.broadcast_to(green, (3, 8, 6)), atol=1.01 * level)  # wide: columns
    assert np.abs(x - green).mean() < 0.05  # nothing of the red and blue bands but a faint edge
    # A top-left crop would hold red: negative control for the check above.
    assert np.abs(scaled(RED)[:, None, None] - green).mean() > 1


def test_grey_and_rgb(tmp_path):
    solid(tmp_path / "rgb.png", (6, 6), (200, 100, 50))
    solid(tmp_path / "zgrey.png", (6, 6), 90, mode="L")
    grey = datasets.image_folder(tmp_path, size=4, channels=1)
    assert grey.shape == (2, 1, 4, 4)
    luma = (200 * 299 + 100 * 587 + 50 * 114) / 1000  # ITU-R 601-2, Pillow's "L"
    np.testing.assert_allclose(grey[0], scaled(round(luma)), atol=1e-6)
    np.testing.assert_allclose(grey[1], scaled(90), atol=1e-6)
    rgb = datasets.image_folder(tmp_path, size=4, channels=3)
    assert rgb.shape == (2, 3, 4, 4)
    np.testing.assert_allclose(rgb[1], scaled(90), atol=1e-6)  # grey in RGB: three equal channels
    np.testing.assert_allclose(rgb[0, :, 0, 0], scaled((200, 100, 50)), atol=1e-6)


def test_transparency_16_bit_grey_and_palette(tmp_path):
    Image.new("RGBA", (4, 4), (0, 0, 0, 0)).save(tmp_path / "a_clear.png")  # fully transparent -> white
    Image.fromarray(np.full((4, 4), 16384, np.uint16)).save(tmp_path / "b_16bit.png")
    Image.new("RGB", (4, 4), (30, 60, 90)).convert("P", palette=Image.Palette.ADAPTIVE).save(tmp_path / "c_pal.png")
    x = datasets.image_folder(tmp_path, size=4, channels=3)
    np.testing.assert_allclose(x[0], 1.0, atol=1e-6)
    np.testing.assert_allclose(x[1], 2 * 16384 / 65535 - 1, atol=1e-6)  # all 16 bits, not the top 8
    np.testing.assert_allclose(x[2, :, 0, 0], scaled((30, 60, 90)), atol=1e-6)


def test_corrupt_files_warn_and_are_skipped_or_raise(two_classes):
    bad = two_classes / "cats" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    truncated = two_classes / "dogs" / "half.jpg"
    whole = (two_classes / "dogs" / "0.jpg").read_bytes()
    truncated.write_bytes(whole[: len(whole) // 3])
    with pytest.warns(RuntimeWarning) as caught:
        x, labels, classes = datasets.image_folder(two_classes, size=8, labels=True)
    assert sorted(os.path.basename(str(w.message).split("'")[1]) for w in caught) == ["broken.png", "half.jpg"]
    assert x.shape == (6, 3, 8, 8) and labels.tolist() == [0, 0, 0, 1, 1, 1] and classes == ["cats", "dogs"]
    with pytest.raises(ValueError, match="broken.png"):
        datasets.image_folder(two_classes, size=8, on_error="raise")


def test_empty_missing_and_unreadable_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        datasets.image_folder(tmp_path / "nowhere")
    (tmp_path / "file.png").write_bytes(b"")
    with pytest.raises(NotADirectoryError):
        datasets.image_folder(tmp_path / "file.png")
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "readme.txt").write_text("no pictures here")
    with pytest.raises(ValueError, match="no image files"):
        datasets.image_folder(empty)
    only_bad = tmp_path / "bad"
    only_bad.mkdir()
    (only_bad / "x.png").write_bytes(b"nope")
    with pytest.warns(RuntimeWarning), pytest.raises(ValueError, match="none of the 1 image files"):
        datasets.image_folder(only_bad)


def test_labels_need_class_folders(two_classes):
    solid(two_classes / "loose.png", (8, 8), RED)
    with pytest.raises(ValueError, match="lie directly in it"):
        datasets.image_folder(two_classes, size=8, labels=True)
    assert datasets.image_folder(two_classes, size=8).shape[0] == 7  # without labels it is just an image
    (two_classes / "loose.png").unlink()
    (two_classes / "birds").mkdir()
    with pytest.raises(ValueError, match="birds"):
        datasets.image_folder(two_classes, size=8, labels=True)


@pytest.mark.parametrize("kwargs", [dict(size=0), dict(size=2.5), dict(size=True), dict(size=5000), dict(channels=2),
                                    dict(channels=4), dict(on_error="ignore"), dict(max_bytes=0)])
def test_invalid_arguments(two_classes, kwargs):
    with pytest.raises(InvalidArgumentError):
        datasets.image_folder(two_classes, **kwargs)


def test_memory_bound_is_checked_before_loading(two_classes, monkeypatch):
    def no_loading(*args):
        raise AssertionError("an image was loaded before the size check")

    monkeypatch.setattr(datasets, "_load_image", no_loading)
    need = 6 * 3 * 64 * 64 * 4  # N·C·size²·4 bytes
    with pytest.raises(MemoryError, match="max_bytes"):
        datasets.image_folder(two_classes, size=64, max_bytes=need - 1)
    with pytest.raises(AssertionError, match="before the size check"):  # negative control: at the bound it loads
        datasets.image_folder(two_classes, size=64, max_bytes=need)


# ---- save_grid --------------------------------------------------------------------------

@pytest.mark.parametrize("channels", [1, 3])
def test_save_grid_round_trip(tmp_path, channels):
    rng = np.random.default_rng(channels)
    levels = rng.integers(0, 256, size=(5, channels, 4, 6))
    images = (levels / 127.5 - 1).astype(np.float32)  # exactly representable levels v/127.5 − 1
    path = datasets.save_grid(images, tmp_path / "grid.png", nrow=2, padding=1, pad_value=-1.0)
    with Image.open(path) as grid:
        assert grid.mode == ("L" if channels == 1 else "RGB")
        pixels = np.asarray(grid).reshape(grid.height, grid.width, channels)
    assert pixels.shape[:2] == (3 * (4 + 1) + 1, 2 * (6 + 1) + 1)  # 3 rows of 2
    for k in range(5):
        r, c = divmod(k, 2)
        tile = pixels[1 + r * 5:1 + r * 5 + 4, 1 + c * 7:1 + c * 7 + 6].transpose(2, 0, 1)
        np.testing.assert_array_equal(tile, levels[k])
    assert (pixels[0] == 0).all() and (pixels[-5:, 7:] == 0).all()  # padding (-1 -> 0) and the empty sixth cell
    assert os.listdir(tmp_path) == ["grid.png"]  # no temporary file left behind


def test_save_grid_clips_and_checks(tmp_path):
    path = datasets.save_grid(np.array([[[[-3.0, 3.0]]]], np.float32), tmp_path / "g.png", padding=0)
    with Image.open(path) as grid:
        assert np.asarray(grid).tolist() == [[0, 255]]
    for bad in (np.zeros((2, 2, 4, 4)), np.zeros((3, 4, 4)), np.zeros((0, 1, 4, 4)), np.full((1, 1, 2, 2), np.nan)):
        with pytest.raises(InvalidArgumentError):
            datasets.save_grid(bad, tmp_path / "bad.png")
    with pytest.raises(InvalidArgumentError):
        datasets.save_grid(np.zeros((1, 1, 2, 2)), tmp_path / "bad.png", nrow=0)
    assert os.listdir(tmp_path) == ["g.png"]


def test_save_grid_failure_leaves_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "grid.png"
    datasets.save_grid(np.zeros((1, 1, 2, 2), np.float32), target)
    before = target.read_bytes()

    def half_then_fail(self, fp, *args, **kwargs):
        fp.write(b"\x89PNG half a file")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        datasets.save_grid(np.ones((4, 3, 8, 8), np.float32), target)
    assert target.read_bytes() == before
    assert os.listdir(tmp_path) == ["grid.png"]


def test_package_imports_without_pillow(tmp_path):
    code = ("import sys; sys.modules['PIL'] = None\n"
            "import swiftddpm, swiftddpm.cli\n"
            "try:\n    swiftddpm.datasets.image_folder(sys.argv[1])\n"
            "except ImportError as e:\n    print('ImportError:', e)\n")
    env = {**os.environ, "PYTHONPATH": str(REPO / "python")}
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, env=env,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert "ImportError:" in out.stdout and "pip install Pillow" in out.stdout


def test_pillow_is_declared_where_it_is_installed():
    import re
    project = (REPO / "python" / "pyproject.toml").read_text()
    images_extra = re.search(r"^images = \[(.*)\]", project, re.M)
    assert images_extra and '"Pillow' in images_extra.group(1)
    setup = re.search(r"^setup-python:\n(.*?)\n\n", (REPO / "Makefile").read_text(), re.M | re.S).group(1)
    assert '"Pillow": "PIL"' in setup


# ---- Issue 19: files that are not images to decode ----------------------------------------

def test_a_device_named_png_is_refused_by_its_type(tmp_path):
    """A link to /dev/zero named c.png: refused because fstat says it is a device (before the
    fix Pillow read from it and the warning said only "cannot identify image file")."""
    solid(tmp_path / "a.png", (4, 4), RED)
    os.symlink("/dev/zero", tmp_path / "c.png")
    with pytest.warns(RuntimeWarning) as caught:
        x = datasets.image_folder(tmp_path, size=4)
    assert x.shape == (1, 3, 4, 4)
    assert len(caught) == 1 and "c.png" in str(caught[0].message) and "character device" in str(caught[0].message)


@pytest.mark.parametrize("on_error", ["warn", "raise"])
def test_a_fifo_named_png_is_refused_by_its_type_not_waited_on(tmp_path, on_error):
    """A FIFO named b.png (no writer: reading it would block forever) is opened without
    blocking and refused because fstat says FIFO, in both on_error modes."""
    solid(tmp_path / "a.png", (4, 4), RED)
    os.mkfifo(tmp_path / "b.png")
    if on_error == "raise":
        with pytest.raises(ValueError, match=r"b\.png.*not a regular file \(it is a FIFO\)"):
            datasets.image_folder(tmp_path, size=4, on_error="raise")
        return
    with pytest.warns(RuntimeWarning, match=r"b\.png.*not a regular file \(it is a FIFO\)"):
        x = datasets.image_folder(tmp_path, size=4)
    np.testing.assert_allclose(x[0, :, 0, 0], scaled(RED), atol=1e-6)


def _png_declaring(path, width, height):
    """A PNG whose header declares width×height 8-bit grey pixels and that holds no pixel data."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


def test_declared_pixel_count_is_checked_before_decoding(tmp_path):
    """A PNG declaring 12000×12000 pixels (a 424 KB one decoded to a 1.7 GB peak for 8×8
    images) is refused from its header against a bound that follows the requested size."""
    _png_declaring(tmp_path / "huge.png", 12000, 12000)
    solid(tmp_path / "small.png", (16, 16), (200, 200, 200), mode="RGB")
    with pytest.warns(RuntimeWarning, match=r"huge\.png.*12000×12000.*over the bound of 33554432") as caught:
        x = datasets.image_folder(tmp_path, size=8)
    assert len(caught) == 1 and x.shape == (1, 3, 8, 8)
    with pytest.raises(ValueError, match="max_pixels"):
        datasets.image_folder(tmp_path, size=8, on_error="raise", max_pixels=100 * 100)
    assert datasets.max_source_pixels(8) == 1 << 25 and datasets.max_source_pixels(200) == 12800 ** 2
    with pytest.raises(InvalidArgumentError, match="max_pixels"):
        datasets.image_folder(tmp_path, size=8, max_pixels=0)


def test_save_grid_replaces_a_link_and_keeps_the_targets_privacy(tmp_path):
    victim = tmp_path / "victim.png"
    victim.write_bytes(b"precious")
    victim.chmod(0o600)
    os.symlink(victim, tmp_path / "grid.png")
    datasets.save_grid(np.zeros((1, 1, 2, 2), np.float32), tmp_path / "grid.png")
    assert victim.read_bytes() == b"precious" and not (tmp_path / "grid.png").is_symlink()
    assert (tmp_path / "grid.png").stat().st_mode & 0o777 == 0o600
    with Image.open(tmp_path / "grid.png") as grid:
        assert grid.size == (6, 6)
