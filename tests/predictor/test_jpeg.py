"""JPEGs decode to exactly the pixels ``cv2.imdecode(..., IMREAD_COLOR)`` gives (what Ultralytics
reads), on real photos and on progressive, greyscale, CMYK, 4:4:4 and EXIF-rotated files; other
formats and JPEGs libjpeg-turbo refuses still go through Pillow."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

import modelserve as ms
from modelserve import InvalidInputError, _jpeg
from modelserve._images import load_image

cv2 = pytest.importorskip("cv2")
pytest.importorskip("simplejpeg")

PHOTOS = ("bus.jpg", "zidane.jpg")


def cv2_decode(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


def jpeg(img: Image.Image, **save) -> bytes:
    out = io.BytesIO()
    img.save(out, "JPEG", **save)
    return out.getvalue()


@pytest.fixture(scope="module")
def source(photo):
    return Image.open(photo("bus.jpg")).convert("RGB")


def variants(source):
    with_exif = {}
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        with_exif[f"exif{orientation}"] = jpeg(source, quality=90, exif=exif)
    return {
        "progressive": jpeg(source, quality=85, progressive=True),
        "greyscale": jpeg(source.convert("L"), quality=90),
        "cmyk": jpeg(source.convert("CMYK"), quality=90),
        "444": jpeg(source, quality=95, subsampling=0),
        "422": jpeg(source, quality=75, subsampling=1),
        "odd-size": jpeg(source.crop((3, 5, 640, 481)), quality=90),
        **with_exif,
    }


@pytest.mark.parametrize("name", PHOTOS)
def test_real_photos_equal_opencv(photo, name):
    data = photo(name).read_bytes()
    for image in (load_image(data), load_image(str(photo(name)))):
        assert image.bgr and image.pixels.flags.c_contiguous
        np.testing.assert_array_equal(image.pixels, cv2_decode(data))


def test_progressive_greyscale_cmyk_and_every_exif_orientation_equal_opencv(source):
    for name, data in variants(source).items():
        image = load_image(data)
        want = cv2_decode(data)
        assert image.pixels.shape == want.shape, name
        np.testing.assert_array_equal(image.pixels, want, err_msg=name)
        assert image.pixels.flags.c_contiguous, name


def test_exif_orientations_turn_the_image_as_pillow_does(source):
    from PIL import ImageOps

    for name, data in variants(source).items():
        if name.startswith("exif"):
            upright = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
            assert load_image(data).pixels.shape[:2] == (upright.height, upright.width), name


def test_cmyk_is_opencvs_not_pillows(source):
    """Pillow converts CMYK with its own rounding (off by one in places): Ultralytics sees OpenCV's."""
    data = variants(source)["cmyk"]
    pillow = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))[..., ::-1]
    assert not np.array_equal(pillow, cv2_decode(data))
    np.testing.assert_array_equal(load_image(data).pixels, cv2_decode(data))


def test_other_formats_and_corrupt_jpegs_go_through_pillow(source):
    png = io.BytesIO()
    source.save(png, "PNG")
    image = load_image(png.getvalue())
    assert not image.bgr and np.array_equal(image.pixels, np.asarray(source))
    truncated = jpeg(source, quality=90)[:5000]
    with pytest.raises(InvalidInputError, match="cannot decode"):
        load_image(truncated)
    with pytest.raises(InvalidInputError):
        load_image(b"\xff\xd8\xff" + b"\x00" * 64)  # a JPEG signature and nothing else


def test_the_decompression_bomb_limit_still_applies(source, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(InvalidInputError, match="decompression bomb"):
        load_image(jpeg(source))


def test_scaled_decoding_keeps_at_least_the_asked_size(source):
    data = jpeg(source, quality=90)  # 810x1080
    assert _jpeg.decode(data, "x", target=lambda hw: (540, 405))[0].shape == (540, 405, 3)  # exactly 1/2
    assert _jpeg.decode(data, "x", target=lambda hw: (541, 405))[0].shape == (1080, 810, 3)  # 1/2 would be too small
    assert _jpeg.decode(data, "x", target=lambda hw: (100, 100))[0].shape == (135, 102, 3)  # 1/8, rounded up
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 810 wide, shown 1080 wide
    rotated = jpeg(source, quality=90, exif=exif)
    assert _jpeg.decode(rotated, "x", target=lambda hw: (405, 540))[0].shape == (405, 540, 3)


def test_the_predictor_gives_ultralytics_pixels_its_results(detector_path, photo):
    """Decoding from bytes, a path or OpenCV's own array gives the same detections."""
    data = photo("bus.jpg").read_bytes()
    with ms.load(detector_path) as p:
        a, b, c = p.predict(data), p.predict(str(photo("bus.jpg"))), p.predict(cv2_decode(data))
    np.testing.assert_array_equal(a.xyxy, c.xyxy)
    np.testing.assert_array_equal(b.xyxy, c.xyxy)
    np.testing.assert_array_equal(a.confidence, c.confidence)


def test_the_exif_scan_finds_every_orientation_pillow_finds(source, photo):
    """The segment walk that skips Pillow for JPEGs without EXIF never misses an EXIF block Pillow
    would read (an ICC profile, comments and an XMP APP1 before it included), and never reads past
    the headers."""
    from modelserve import _jpeg

    exif = Image.Exif()
    exif[0x0112] = 6
    xmp = b"http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta/>"
    cases = {**variants(source), "bus": photo("bus.jpg").read_bytes(), "zidane": photo("zidane.jpg").read_bytes(),
             "icc+comment+exif": jpeg(source, quality=80, icc_profile=b"\0" * 3000, comment=b"hello", exif=exif),
             "xmp-then-exif": jpeg(source, quality=80, xmp=xmp, exif=exif)}
    for name, data in cases.items():
        has = 0x0112 in Image.open(io.BytesIO(data)).getexif()
        assert _jpeg._has_exif(data) or not has, name
        assert _jpeg._orientation(data) == Image.open(io.BytesIO(data)).getexif().get(0x0112, 1), name
    assert not _jpeg._has_exif(cases["bus"]) and not _jpeg._has_exif(cases["progressive"])
    assert _jpeg._has_exif(cases["exif6"]) and _jpeg._has_exif(cases["xmp-then-exif"])
    assert _jpeg._has_exif(b"\xff\xd8\xff")  # truncated: Pillow decides
