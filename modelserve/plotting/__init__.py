"""Pictures and label files from results: :func:`plot`, :func:`save`, :func:`save_txt`.

Drawn with numpy and Pillow (no OpenCV, no font download: Pillow's bundled scalable font), in
Ultralytics' colours, so a picture looks like the one Ultralytics draws; label files are
Ultralytics' ``save_txt`` format, line for line.

* :mod:`.colors`: the class palette, pose skeleton and keypoint colours
* :mod:`.fonts`: the font, text measures and label placement
* :mod:`.boxes`: boxes and rotated boxes with their labels
* :mod:`.layers`: the drawing settings (``Style``), masks, keypoints, classification lines
* :mod:`.draw`: ``plot`` / ``save`` (argument checks, the picture, the order of the layers)
* :mod:`.label_files`: ``save_txt`` / ``label_lines``

It never imports the result types (it reads them by their attributes), so they can call it lazily.
"""

from .draw import plot, save
from .label_files import label_lines, save_txt

__all__ = ["plot", "save", "save_txt", "label_lines"]
