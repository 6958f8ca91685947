"""oddeye.io.images: each mode and extension decodes by the documented rules; bad files fail."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from oddeye.errors import DataError, ImageReadError
from oddeye.io.images import (
    IMAGE_EXTENSIONS,
    as_rgb_uint8,
    list_images,
    read_image,
    read_mask,
    uint16_to_uint8,
)

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
GRAY = RNG.integers(0, 256, size=(5, 7), dtype=np.uint8)


def _save(img: Image.Image, path: Path, **kw) -> Path:
    img.save(path, **kw)
    return path


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png16(values: np.ndarray) -> bytes:
    """A 16-bit grayscale PNG written by hand (exact values, no Pillow in between)."""
    h, w = values.shape
    raw = b"".join(b"\x00" + values[i].astype(">u2").tobytes() for i in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
            + _png_chunk(b"IDAT", zlib.compress(raw)) + _png_chunk(b"IEND", b""))


def _assert_clear_error(exc: BaseException, path: Path, *words: str) -> None:
    msg = str(exc)
    assert str(path) in msg, msg
    for w in words:
        assert w in msg.lower(), msg


# ---------------------------------------------------------------- constants and pure helpers


def test_extensions_cover_the_documented_set():
    assert IMAGE_EXTENSIONS == {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp",
                                ".gif"}


def test_uint16_scaling_rounds_v_over_257_exactly():
    v = np.arange(65536, dtype=np.uint16)
    expected = np.floor(v.astype(np.float64) / 257 + 0.5).astype(np.uint8)
    np.testing.assert_array_equal(uint16_to_uint8(v), expected)
    assert uint16_to_uint8(np.array([0, 128, 129, 32768, 65535], np.uint16)).tolist() == [
        0, 0, 1, 128, 255]


def test_pillow_truncated_loading_stays_off():
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


# ---------------------------------------------------------------- modes


def test_rgb_png_roundtrip(tmp_path):
    p = _save(Image.fromarray(RGB), tmp_path / "a.png")
    out = read_image(p)
    assert out.dtype == np.uint8 and out.shape == (5, 7, 3)
    np.testing.assert_array_equal(out, RGB)


def test_gray_is_replicated(tmp_path):
    out = read_image(_save(Image.fromarray(GRAY), tmp_path / "g.png"))
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], GRAY)


def test_rgba_drops_alpha_without_compositing(tmp_path):
    rgba = np.dstack([RGB, np.zeros((5, 7), np.uint8)])  # fully transparent everywhere
    out = read_image(_save(Image.fromarray(rgba, "RGBA"), tmp_path / "a.png"))
    np.testing.assert_array_equal(out, RGB)


def test_la_drops_alpha(tmp_path):
    la = np.dstack([GRAY, np.full((5, 7), 7, np.uint8)])
    img = Image.fromarray(la, "LA")
    out = read_image(_save(img, tmp_path / "la.png"))
    np.testing.assert_array_equal(out, np.repeat(GRAY[:, :, None], 3, axis=2))


def test_palette_uses_palette_colours(tmp_path):
    img = Image.new("P", (3, 1))
    img.putpalette([0, 0, 0, 200, 10, 20, 1, 2, 3] + [0] * (256 * 3 - 9))
    img.putdata([0, 1, 2])
    out = read_image(_save(img, tmp_path / "p.png"))
    assert out.tolist() == [[[0, 0, 0], [200, 10, 20], [1, 2, 3]]]


def test_palette_with_transparency_keeps_colour(tmp_path):
    img = Image.new("P", (2, 1))
    img.putpalette([9, 8, 7, 255, 255, 255] + [0] * (256 * 3 - 6))
    img.putdata([0, 1])
    out = read_image(_save(img, tmp_path / "pt.png", transparency=0))
    assert out.tolist() == [[[9, 8, 7], [255, 255, 255]]]


def test_sixteen_bit_png_scaled_by_257(tmp_path):
    values = np.array([[0, 128, 129, 385, 32768, 65535]], np.uint16)
    p = tmp_path / "g16.png"
    p.write_bytes(_png16(values))
    assert Image.open(p).mode.startswith("I")  # the file really is decoded as 16-bit
    out = read_image(p)
    assert out[:, :, 0].tolist() == [[0, 0, 1, 1, 128, 255]]
    assert (out[:, :, 0] == out[:, :, 2]).all()


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I"])
def test_sixteen_bit_tiff_variants(tmp_path, mode):
    values = np.array([[0, 257, 1000, 65535]], np.uint16)
    if mode == "I":
        img = Image.fromarray(values.astype(np.int32))
    else:
        dtype = ">u2" if mode == "I;16B" else "<u2"
        img = Image.frombytes(mode, (4, 1), values.astype(dtype).tobytes())
    p = _save(img, tmp_path / "x.tif")
    assert Image.open(p).mode == mode
    assert read_image(p)[:, :, 1].tolist() == [[0, 1, 4, 255]]


def test_mode_i_outside_16_bit_range_is_an_error(tmp_path):
    p = _save(Image.fromarray(np.array([[-5, 70000]], np.int32)), tmp_path / "big.tif")
    with pytest.raises(ImageReadError) as err:
        read_image(p)
    _assert_clear_error(err.value, p, "0..65535", "-5", "70000")


def test_float_f_in_unit_range(tmp_path):
    p = _save(Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32)), tmp_path / "f.tif")
    assert Image.open(p).mode == "F"
    assert read_image(p)[:, :, 0].tolist() == [[0, 128, 255]]


def test_float_f_in_0_255_range_is_rejected(tmp_path):
    p = _save(Image.fromarray(np.array([[0.0, 200.0]], np.float32)), tmp_path / "f255.tif")
    with pytest.raises(ImageReadError) as err:
        read_image(p)
    _assert_clear_error(err.value, p, "[0, 1]", "200")


def test_float_f_nan_is_rejected(tmp_path):
    p = _save(Image.fromarray(np.array([[0.0, np.nan]], np.float32)), tmp_path / "nan.tif")
    with pytest.raises(ImageReadError) as err:
        read_image(p)
    _assert_clear_error(err.value, p, "nan")


def test_cmyk_converted_by_pillow(tmp_path):
    img = Image.new("CMYK", (4, 1))
    img.putdata([(0, 0, 0, 0), (255, 0, 0, 0), (0, 0, 0, 255), (0, 255, 255, 0)])
    p = _save(img, tmp_path / "c.tif")
    assert Image.open(p).mode == "CMYK"
    assert read_image(p).tolist() == [[[255, 255, 255], [0, 255, 255], [0, 0, 0], [255, 0, 0]]]


def test_cmyk_jpeg(tmp_path):
    img = Image.new("CMYK", (16, 16), (0, 0, 0, 0))
    p = _save(img, tmp_path / "c.jpg", quality=95)
    assert Image.open(p).mode == "CMYK"
    out = read_image(p)
    assert out.shape == (16, 16, 3) and out.min() >= 250  # white paper


def test_one_bit(tmp_path):
    bits = np.array([[True, False, True]])
    p = _save(Image.fromarray(bits), tmp_path / "b.png")
    assert Image.open(p).mode == "1"
    assert read_image(p)[:, :, 0].tolist() == [[255, 0, 255]]


def test_multi_frame_reads_first_frame(tmp_path):
    p = tmp_path / "multi.tif"
    Image.new("L", (4, 4), 10).save(p, save_all=True, append_images=[Image.new("L", (4, 4), 200)])
    assert Image.open(p).n_frames == 2
    assert read_image(p)[0, 0].tolist() == [10, 10, 10]


@pytest.mark.parametrize("mode", ["La", "PA", "RGBa", "RGBX", "YCbCr", "HSV", "LAB"])
def test_other_pillow_modes_convert(mode):
    out = as_rgb_uint8(Image.new(mode, (3, 2)))
    assert out.shape == (2, 3, 3) and out.dtype == np.uint8


def test_exif_orientation_applied(tmp_path):
    im = Image.fromarray(np.zeros((2, 3, 3), np.uint8))
    im.putpixel((0, 0), (255, 0, 0))  # top-left red
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    p = _save(im, tmp_path / "o.png", exif=exif)
    out = read_image(p)
    assert out.shape == (3, 2, 3)
    assert out[0, 1].tolist() == [255, 0, 0]  # now top-right


# ---------------------------------------------------------------- extensions


@pytest.mark.parametrize("ext", sorted(IMAGE_EXTENSIONS) + [".PNG", ".JpG", ".TIFF"])
def test_every_extension(tmp_path, ext):
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[:, 8:] = (200, 40, 90)
    kw = {"lossless": True} if ext.lower() == ".webp" else {}
    if ext.lower() in (".jpg", ".jpeg"):
        kw = {"quality": 95, "subsampling": 0}  # 4:4:4: no chroma bleeding at the edge
    p = _save(Image.fromarray(rgb), tmp_path / f"x{ext}", **kw)
    out = read_image(p)
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8
    tol = 12 if ext.lower() in (".jpg", ".jpeg") else 0
    assert np.abs(out.astype(int) - rgb).max() <= tol


def test_gray_jpeg(tmp_path):
    p = _save(Image.fromarray(np.full((8, 8), 77, np.uint8)), tmp_path / "g.jpg")
    out = read_image(p)
    assert out.shape == (8, 8, 3) and np.abs(out.astype(int) - 77).max() <= 2


# ---------------------------------------------------------------- broken files


def _good_png_bytes(tmp_path) -> bytes:
    noise = RNG.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    return _save(Image.fromarray(noise), tmp_path / "full.png").read_bytes()


def test_truncated_png(tmp_path):
    data = _good_png_bytes(tmp_path)
    p = tmp_path / "cut.png"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError) as err:
        read_image(p)
    _assert_clear_error(err.value, p, "truncated")


def test_truncated_jpeg(tmp_path):
    noise = RNG.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    data = _save(Image.fromarray(noise), tmp_path / "full.jpg").read_bytes()
    p = tmp_path / "cut.jpg"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError) as err:
        read_image(p)
    _assert_clear_error(err.value, p, "truncated")


def test_png_with_corrupt_pixel_data(tmp_path):
    data = bytearray(_good_png_bytes(tmp_path))
    start = data.index(b"IDAT") + 4
    data[start + 10 : start + 200] = bytes(190)  # zeroed deflate stream, header intact
    p = tmp_path / "bad.png"
    p.write_bytes(bytes(data))
    with pytest.raises(ImageReadError) as err:
        read_image(p)
    _assert_clear_error(err.value, p)


def test_random_bytes_named_png(tmp_path):
    p = tmp_path / "noise.png"
    p.write_bytes(RNG.integers(0, 256, 500, dtype=np.uint8).tobytes())
    with pytest.raises(ImageReadError) as err:
        read_image(p)
    _assert_clear_error(err.value, p, "not a readable image")


def test_empty_file(tmp_path):
    p = tmp_path / "empty.png"
    p.write_bytes(b"")
    with pytest.raises(ImageReadError) as err:
        read_image(p)
    _assert_clear_error(err.value, p, "empty")


def test_missing_file(tmp_path):
    p = tmp_path / "nope.png"
    with pytest.raises(ImageReadError) as err:
        read_image(p)
    _assert_clear_error(err.value, p, "not found")


def test_directory_is_not_an_image(tmp_path):
    p = tmp_path / "dir.png"
    p.mkdir()
    with pytest.raises(ImageReadError) as err:
        read_image(p)
    _assert_clear_error(err.value, p, "directory")


def test_zero_size_png(tmp_path):
    ihdr = struct.pack(">IIBBBBB", 0, 5, 8, 0, 0, 0, 0)
    p = tmp_path / "zero.png"
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
                  + _png_chunk(b"IDAT", zlib.compress(b"")) + _png_chunk(b"IEND", b""))
    with pytest.raises(ImageReadError) as err:
        read_image(p)
    _assert_clear_error(err.value, p, "zero size")


def test_errors_are_not_raw_pillow_errors(tmp_path):
    p = tmp_path / "noise.jpg"
    p.write_bytes(b"\xff\xd8\xff" + bytes(100))
    with pytest.raises(ImageReadError) as err:
        read_image(p)
    assert type(err.value) is ImageReadError


# ---------------------------------------------------------------- arrays


@pytest.mark.parametrize("shape", [(5, 7), (5, 7, 1)])
def test_array_gray_replicated(shape):
    out = as_rgb_uint8(GRAY.reshape(shape))
    assert out.shape == (5, 7, 3)
    np.testing.assert_array_equal(out[:, :, 2], GRAY)


def test_array_rgb_and_rgba():
    np.testing.assert_array_equal(as_rgb_uint8(RGB), RGB)
    rgba = np.dstack([RGB, np.zeros((5, 7), np.uint8)])
    np.testing.assert_array_equal(as_rgb_uint8(rgba), RGB)


def test_array_result_never_aliases_input():
    src = RGB.copy()
    out = as_rgb_uint8(src)
    out[...] = 0
    np.testing.assert_array_equal(src, RGB)
    out4 = as_rgb_uint8(np.dstack([src, src[:, :, :1]]))
    assert out4.flags.c_contiguous and out4.flags.owndata


def test_array_dtypes():
    assert as_rgb_uint8(np.array([[0, 129, 65535]], np.uint16))[0, :, 0].tolist() == [0, 1, 255]
    assert as_rgb_uint8(np.array([[True, False]]))[0, :, 0].tolist() == [255, 0]
    for dt in (np.float16, np.float32, np.float64):
        assert as_rgb_uint8(np.array([[0.0, 0.5, 1.0]], dt))[0, :, 0].tolist() == [0, 128, 255]


def test_array_float_out_of_range_names_argument_and_range():
    with pytest.raises(ImageReadError) as err:
        as_rgb_uint8(np.array([[0.0, 254.0]]), name="frame")
    msg = str(err.value)
    assert "frame" in msg and "[0, 254]" in msg and "divide by 255" in msg
    with pytest.raises(ImageReadError, match=r"frame.*\[-0\.5, 0\.5\]"):
        as_rgb_uint8(np.array([[-0.5, 0.5]]), name="frame")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_array_float_nonfinite(bad):
    with pytest.raises(ImageReadError, match="img.*NaN or infinite"):
        as_rgb_uint8(np.array([[0.0, bad]]), name="img")


@pytest.mark.parametrize("dtype", [np.int64, np.int8, np.uint32, np.complex64, object])
def test_array_unsupported_dtype(dtype):
    with pytest.raises(ImageReadError, match="x: unsupported dtype"):
        as_rgb_uint8(np.zeros((2, 2), dtype=dtype), name="x")


@pytest.mark.parametrize("shape", [(4,), (4, 4, 2), (4, 4, 5), (2, 4, 4, 3), (0, 4), (4, 0, 3)])
def test_array_bad_shapes(shape):
    with pytest.raises(ImageReadError, match="x: "):
        as_rgb_uint8(np.zeros(shape, np.uint8), name="x")


def test_array_channel_first_hint():
    with pytest.raises(ImageReadError, match="channel-first"):
        as_rgb_uint8(np.zeros((3, 32, 32), np.uint8))


def test_non_array_inputs_rejected():
    with pytest.raises(ImageReadError, match="numpy array"):
        as_rgb_uint8([[1, 2], [3, 4]], name="x")


def test_pil_image_input_uses_the_same_rules():
    img = Image.fromarray(np.array([[0, 129, 65535]], np.uint16))
    assert as_rgb_uint8(img)[0, :, 0].tolist() == [0, 1, 255]


@pytest.mark.parametrize("arr", [GRAY, RGB, np.dstack([RGB, GRAY])], ids=["L", "RGB", "RGBA"])
def test_array_and_file_paths_agree(tmp_path, arr):
    p = _save(Image.fromarray(arr), tmp_path / "same.png")
    np.testing.assert_array_equal(read_image(p), as_rgb_uint8(arr))


# ---------------------------------------------------------------- masks


def test_mask_one_bit_and_l(tmp_path):
    m = np.zeros((6, 8), bool)
    m[1:3, 2:5] = True
    for name, img in [("b.png", Image.fromarray(m)),
                      ("l.png", Image.fromarray(m.astype(np.uint8) * 255))]:
        out = read_mask(_save(img, tmp_path / name))
        assert out.dtype == np.uint8 and out.shape == (6, 8)
        np.testing.assert_array_equal(out, m.astype(np.uint8))


def test_mask_label_image_with_values_0_1(tmp_path):
    m = np.zeros((6, 8), np.uint8)
    m[2, 3] = 1
    np.testing.assert_array_equal(read_mask(_save(Image.fromarray(m), tmp_path / "m.png")), m)


def test_mask_threshold_is_half_range(tmp_path):
    m = np.array([[0, 2, 127, 128, 255]], np.uint8)
    assert read_mask(_save(Image.fromarray(m), tmp_path / "m.png")).tolist() == [[0, 0, 0, 1, 1]]


def test_mask_jpeg_noise_is_ignored(tmp_path):
    m = np.zeros((64, 64), np.uint8)
    m[10:30, 13:41] = 255
    p = _save(Image.fromarray(m), tmp_path / "m.jpg", quality=75)
    decoded = np.asarray(Image.open(p))
    noisy = (decoded > 0) != (m > 0)
    assert noisy.any()  # the JPEG really adds noise that a "> 0" rule would keep
    out = read_mask(p)
    assert ((out == 1) != (m > 0)).sum() < noisy.sum()
    assert (out == (m > 0)).mean() > 0.99


def test_mask_colour_uses_largest_channel(tmp_path):
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[0, 0] = (255, 0, 0)  # pure red: luma 76 would miss it
    rgb[1, 1] = (0, 0, 200)
    out = read_mask(_save(Image.fromarray(rgb), tmp_path / "m.png"))
    assert out.tolist() == [[1, 0], [0, 1]]


def test_mask_rgba_drops_alpha(tmp_path):
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 1] = (255, 255, 255, 0)
    out = read_mask(_save(Image.fromarray(rgba, "RGBA"), tmp_path / "m.png"))
    assert out.tolist() == [[0, 1], [0, 0]]


def test_mask_palette(tmp_path):
    img = Image.new("P", (3, 1))
    img.putpalette([0, 0, 0, 128, 0, 0, 255, 255, 255] + [0] * (256 * 3 - 9))
    img.putdata([0, 1, 2])
    assert read_mask(_save(img, tmp_path / "m.png")).tolist() == [[0, 1, 1]]


def test_mask_sixteen_bit(tmp_path):
    p = tmp_path / "m16.png"
    p.write_bytes(_png16(np.array([[0, 1000, 40000, 65535]], np.uint16)))
    assert read_mask(p).tolist() == [[0, 0, 1, 1]]
    p.write_bytes(_png16(np.array([[0, 1, 1, 0]], np.uint16)))
    assert read_mask(p).tolist() == [[0, 1, 1, 0]]


def test_mask_shape_check(tmp_path):
    p = _save(Image.fromarray(np.zeros((6, 8), np.uint8)), tmp_path / "m.png")
    assert read_mask(p, shape=(6, 8)).shape == (6, 8)
    assert read_mask(p, shape=(6, 8, 3)).shape == (6, 8)
    with pytest.raises(DataError) as err:
        read_mask(p, shape=(8, 6))
    msg = str(err.value)
    assert str(p) in msg and "8x6" in msg and "6x8" in msg


def test_mask_unreadable_is_image_read_error(tmp_path):
    p = tmp_path / "m.png"
    p.write_bytes(b"not a png")
    with pytest.raises(ImageReadError, match="m.png"):
        read_mask(p)


# ---------------------------------------------------------------- listing


def test_list_images_filters_and_sorts(tmp_path):
    img = Image.fromarray(GRAY)
    for name in ["b.png", "a.JPG", "c.tiff", "10.png", "2.png", ".hidden.png", "._a.png"]:
        img.save(tmp_path / name, format="PNG")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "Thumbs.db").write_bytes(b"x")
    (tmp_path / "folder.png").mkdir()
    names = [p.name for p in list_images(tmp_path)]
    assert names == ["10.png", "2.png", "a.JPG", "b.png", "c.tiff"]


def test_list_images_recursive_skips_hidden_folders(tmp_path):
    img = Image.fromarray(GRAY)
    for rel in ["z.png", "a/y.png", "a/b/x.png", ".cache/w.png", "a/.ipynb_checkpoints/v.png"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        img.save(tmp_path / rel)
    assert [p.name for p in list_images(tmp_path)] == ["z.png"]
    rel = [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path, recursive=True)]
    assert rel == ["a/b/x.png", "a/y.png", "z.png"]


def test_list_images_missing_folder(tmp_path):
    with pytest.raises(DataError, match="not found"):
        list_images(tmp_path / "nope")
    f = tmp_path / "file.png"
    f.write_bytes(b"")
    with pytest.raises(DataError, match="not a folder"):
        list_images(f)
