"""Ultralytics' colours, so a picture drawn here looks like the one Ultralytics draws.

* Classes: the 20 colours of ``ultralytics.utils.plotting.Colors``, class ``i`` gets
  ``PALETTE[i % 20]``; label text is dark blue on the light colours, white on the others (its
  ``Annotator.get_txt_color``).
* Pose: the COCO 17-keypoint ``SKELETON`` (1-based pairs) with Ultralytics' limb and keypoint
  colours. Ultralytics hands those table rows to OpenCV as BGR, so ``POSE_PALETTE`` rows are
  BGR here too (what users see: blue arms, orange legs, green face); keypoints of other models are
  drawn as points only, in the colour Ultralytics gives them (``Colors()(i)``, RGB values used as BGR).

Every function returns a colour in the channel order asked for (``bgr``).
"""

from __future__ import annotations

__all__ = ["PALETTE", "POSE_PALETTE", "SKELETON", "LIMB_COLORS", "KPT_COLORS", "class_color", "text_color",
           "keypoint_color", "limb_color", "order", "DARK_TEXT", "WHITE"]

Color = tuple[int, int, int]


def _hex(h: str) -> Color:
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)


#: Ultralytics' class palette, RGB.
PALETTE: tuple[Color, ...] = tuple(_hex(h) for h in (
    "042AFF", "0BDBEB", "F3F3F3", "00DFB7", "111F68", "FF6FDD", "FF444F", "CCED00", "00F344", "BD00FF",
    "00B4FF", "DD00BA", "00FFFF", "26C000", "01FFB3", "7D24FF", "7B0068", "FF1B6C", "FC6D2F", "A2FF0B",
))
#: Palette indices whose label text is dark (``DARK_TEXT``); the others get white text.
_DARK_BACKGROUNDS = frozenset({1, 2, 3, 5, 7, 8, 12, 14, 19})
DARK_TEXT: Color = (17, 31, 104)  # RGB
WHITE: Color = (255, 255, 255)

#: Ultralytics' pose palette rows, applied as BGR (as Ultralytics draws them with OpenCV).
POSE_PALETTE: tuple[Color, ...] = (
    (255, 128, 0), (255, 153, 51), (255, 178, 102), (230, 230, 0), (255, 153, 255), (153, 204, 255),
    (255, 102, 255), (255, 51, 255), (102, 178, 255), (51, 153, 255), (255, 153, 153), (255, 102, 102),
    (255, 51, 51), (153, 255, 153), (102, 255, 102), (51, 255, 51), (0, 255, 0), (0, 0, 255), (255, 0, 0),
    (255, 255, 255),
)
#: COCO pose limbs, 1-based keypoint pairs, in Ultralytics' order.
SKELETON: tuple[tuple[int, int], ...] = (
    (16, 14), (14, 12), (17, 15), (15, 13), (12, 13), (6, 12), (7, 13), (6, 7), (6, 8), (7, 9), (8, 10), (9, 11),
    (2, 3), (1, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 7),
)
#: ``POSE_PALETTE`` index of each limb and of each of the 17 keypoints.
LIMB_COLORS: tuple[int, ...] = (9, 9, 9, 9, 7, 7, 7, 0, 0, 0, 0, 0, 16, 16, 16, 16, 16, 16, 16)
KPT_COLORS: tuple[int, ...] = (16, 16, 16, 16, 16, 0, 0, 0, 0, 0, 0, 9, 9, 9, 9, 9, 9)


def order(rgb: Color, bgr: bool) -> Color:
    """An RGB colour in the channel order asked for."""
    return (rgb[2], rgb[1], rgb[0]) if bgr else rgb


def class_color(class_id: int, bgr: bool = False) -> Color:
    """The colour of class ``class_id`` (any int: negative ids wrap as Python's ``%`` does)."""
    return order(PALETTE[int(class_id) % len(PALETTE)], bgr)


def text_color(class_id: int, bgr: bool = False) -> Color:
    """The label text colour on class ``class_id``'s colour."""
    return order(DARK_TEXT if int(class_id) % len(PALETTE) in _DARK_BACKGROUNDS else WHITE, bgr)


def keypoint_color(index: int, num_keypoints: int, bgr: bool = False) -> Color:
    """The colour of keypoint ``index`` of a ``num_keypoints``-keypoint model."""
    if num_keypoints == len(KPT_COLORS):
        b, g, r = POSE_PALETTE[KPT_COLORS[index]]
        return order((r, g, b), bgr)
    r, g, b = PALETTE[index % len(PALETTE)]  # Ultralytics passes these RGB values to OpenCV as BGR
    return order((b, g, r), bgr)


def limb_color(index: int, bgr: bool = False) -> Color:
    """The colour of limb ``index`` of :data:`SKELETON`."""
    b, g, r = POSE_PALETTE[LIMB_COLORS[index]]
    return order((r, g, b), bgr)
