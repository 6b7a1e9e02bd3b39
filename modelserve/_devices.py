"""Reading device names: ``"cuda:1"``, ``"openvino:GPU"``, ``"cpu"``.

:func:`parse_device` splits a name into its family and what follows the colon; it accepts any
family, so each engine checks the families and suffixes it can use and raises its own
:class:`~modelserve.InvalidInputError` listing them (an engine knows its devices; this module
only knows the syntax).

>>> parse_device("CUDA:1"), parse_device("cpu"), parse_device("openvino:gpu")
(('cuda', 1), ('cpu', None), ('openvino', 'gpu'))
"""

from __future__ import annotations

__all__ = ["parse_device"]


def parse_device(device: object) -> tuple[str, int | str | None]:
    """``(family, index or name)`` of a device name ``family[:suffix]``.

    The family is lower-cased; the suffix is an ``int`` when it is ASCII digits (``"cuda:01"`` ->
    1), else the text as given (``"gpu:x"`` -> ``"x"``, ``"cuda:"`` -> ``""``), and ``None`` when
    there is no colon. Surrounding whitespace is ignored. Nothing is refused here: an engine
    refuses the families and suffixes it cannot use.
    """
    family, sep, rest = str(device).strip().partition(":")
    if not sep:
        return family.lower(), None
    if rest.isascii() and rest.isdigit():  # not "²" or "٣", which str.isdigit also accepts
        return family.lower(), int(rest)
    return family.lower(), rest
