"""Data-drift monitoring: how far recent inputs and outputs of a model have moved from a reference.

:class:`DriftMonitor` keeps reference statistics of each image and of its result, and scores the
last ``window`` images against them, feature by feature:

* inputs: ``brightness`` (mean luma, 0-255), ``contrast`` (luma standard deviation), ``width``,
  ``height``, ``aspect`` (width / height);
* outputs: ``detections`` (per image), ``confidence`` (per detection; for a classifier, the top-1
  confidence per image), ``class_mix`` (categorical over class ids; a classifier's top-1 class).

The reference is a list of results (:meth:`DriftMonitor.fit`), the predictions on a folder of
images (:meth:`DriftMonitor.from_folder`) or, when neither is given, the first ``reference_size``
observed results.

Method: the **population stability index** (PSI), ``sum((w - r) * ln(w / r))`` over bins, with
``r`` / ``w`` the reference / window proportions. Numeric features are binned at the reference's
quantiles (``bins`` quantile bins, deciles by default) with open-ended outer edges, so every value
lands in a bin; repeated edges (discrete features such as ``detections``, or sizes when every image
has the same size) are merged. Class mix is binned by class id, plus one "unseen class" bin.
Proportions are epsilon-smoothed (``EPSILON``) so an empty bin gives a large, finite score.

Why PSI: it is distribution-free; it puts every feature, categorical included, on one scale with
conventional thresholds (below 0.1: stable, 0.1-0.25: moderate shift, above 0.25: major shift); and
it is cheap to keep up to date (the window's per-bin counts change by one image at a time). A
Kolmogorov-Smirnov test, by contrast, answers "is there any difference" with a p-value that goes to
zero as the window grows, whatever the size of the shift, and does not handle categories.

Limits:

* Nothing is scored until the window holds ``min_window`` images (``warming_up``). PSI has a
  sampling-noise floor of about ``(bins - 1) * (1/n_window + 1/n_reference)``: with small windows or
  references an unshifted stream can read near 0.1; prefer windows and references of a few hundred.
* Scores are per feature and marginal: a change in the joint distribution that keeps each marginal
  (e.g. bright images becoming the small ones) is not seen.
* Image statistics are taken on a strided subsample (every ``sample_stride``-th pixel in each axis),
  and only when the image is at hand (``observe(result, image)`` or the result's ``orig_img``).
* ``class_mix`` and ``confidence`` of a model with random weights are noise; and a moving confidence
  can be a change of the model (a new version, another engine or precision), not of the inputs. No
  label is used, so drift says the data changed, not that accuracy did.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import numpy as np

from .._errors import InvalidInputError
from ..serving.errors import ServingUnavailableError

__all__ = ["DriftMonitor", "EPSILON", "FEATURES", "THRESHOLDS", "psi", "categorical_psi"]

#: Smallest proportion given to a bin (empty bins would make PSI infinite).
EPSILON = 1e-4
#: PSI thresholds: at or above ``moderate``: a moderate shift; at or above ``major``: a major one.
THRESHOLDS = {"moderate": 0.1, "major": 0.25}
#: The numeric features, then the categorical one.
NUMERIC = ("brightness", "contrast", "width", "height", "aspect", "detections", "confidence")
FEATURES = (*NUMERIC, "class_mix")
#: Luma weights (ITU-R BT.601) in RGB order.
_LUMA_RGB = np.array([0.299, 0.587, 0.114], np.float64)

_Record = dict[str, list[float]]


def _proportions(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    p = counts / total if total > 0 else np.full(len(counts), 1.0 / len(counts))
    p = np.maximum(p, EPSILON)
    return p / p.sum()


def _psi_counts(reference: np.ndarray, window: np.ndarray) -> float:
    r, w = _proportions(reference.astype(np.float64)), _proportions(window.astype(np.float64))
    return float(np.sum((w - r) * np.log(w / r)))


def _edges(reference: np.ndarray, bins: int) -> np.ndarray:
    """Inner bin edges at the reference's quantiles, deduplicated (outer bins are open-ended)."""
    if reference.size == 0:
        return np.zeros(0)
    inner = np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1])
    return np.unique(inner)


def _bin(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    # right-closed bins: a discrete value equal to an edge falls in the bin that edge closes, so
    # e.g. "0 detections" is a bin of its own when at least a decile of the reference has 0
    return np.searchsorted(edges, values, side="left")


def psi(reference: Iterable[float], sample: Iterable[float], bins: int = 10) -> float:
    """PSI of a numeric ``sample`` against ``reference``, binned at the reference's quantiles."""
    ref = np.asarray(list(reference), np.float64)
    cur = np.asarray(list(sample), np.float64)
    if ref.size == 0 or cur.size == 0:
        raise InvalidInputError("psi needs a non-empty reference and sample")
    edges = _edges(ref, bins)
    k = len(edges) + 1
    return _psi_counts(np.bincount(_bin(ref, edges), minlength=k), np.bincount(_bin(cur, edges), minlength=k))


def categorical_psi(reference: Iterable[Any], sample: Iterable[Any]) -> float:
    """PSI of a categorical ``sample`` against ``reference`` (one bin per category of either)."""
    ref, cur = list(reference), list(sample)
    if not ref or not cur:
        raise InvalidInputError("categorical_psi needs a non-empty reference and sample")
    cats = sorted(set(ref) | set(cur), key=repr)
    index = {c: i for i, c in enumerate(cats)}
    rc = np.bincount([index[c] for c in ref], minlength=len(cats))
    wc = np.bincount([index[c] for c in cur], minlength=len(cats))
    return _psi_counts(rc, wc)


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InvalidInputError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _image_stats(image: Any, bgr: bool, stride: int) -> tuple[float, float] | None:
    if image is None:
        return None
    pixels = np.asarray(image)
    if pixels.ndim == 2:
        luma = pixels[::stride, ::stride].astype(np.float64)
    elif pixels.ndim == 3 and pixels.shape[2] in (3, 4):
        sub = pixels[::stride, ::stride, :3].astype(np.float64)
        weights = _LUMA_RGB[::-1] if bgr else _LUMA_RGB
        luma = sub @ weights
    else:
        raise InvalidInputError(f"an image must be HxW or HxWx3, got shape {pixels.shape}")
    if luma.size == 0:
        return None
    return float(luma.mean()), float(luma.std())


def _features(result: Any, image: Any, bgr: bool, stride: int) -> _Record:
    """One image's feature values (a list per feature: one value, several, or none)."""
    record: _Record = {name: [] for name in FEATURES}
    shape = getattr(result, "orig_shape", None)
    if shape is not None and len(shape) >= 2 and shape[0] > 0 and shape[1] > 0:
        h, w = int(shape[0]), int(shape[1])
        record["width"], record["height"], record["aspect"] = [float(w)], [float(h)], [w / h]
    if image is None:
        image, bgr = getattr(result, "orig_img", None), True  # orig_img is BGR, as Ultralytics'
    stats = _image_stats(image, bgr, stride)
    if stats is not None:
        record["brightness"], record["contrast"] = [stats[0]], [stats[1]]
    if hasattr(result, "class_id") and hasattr(result, "confidence"):  # Detections
        record["detections"] = [float(len(result.class_id))]
        record["confidence"] = [float(c) for c in np.asarray(result.confidence).ravel()]
        record["class_mix"] = [float(c) for c in np.asarray(result.class_id).ravel()]
    elif hasattr(result, "probs"):  # Classification
        record["confidence"] = [float(result.top1conf)]
        record["class_mix"] = [float(result.top1)]
    else:
        raise InvalidInputError(f"drift monitoring needs a modelserve result, got {type(result).__name__}")
    return record


class _Reference:
    """Per-feature bins of a reference and its counts in them."""

    def __init__(self, records: list[_Record], bins: int) -> None:
        self.size = len(records)
        self.edges: dict[str, np.ndarray] = {}
        self.categories: dict[float, int] = {}
        self.counts: dict[str, np.ndarray] = {}
        self.summaries: dict[str, dict[str, Any]] = {}
        for name in NUMERIC:
            values = np.asarray([v for r in records for v in r[name]], np.float64)
            self.edges[name] = _edges(values, bins)
            self.counts[name] = np.bincount(_bin(values, self.edges[name]), minlength=len(self.edges[name]) + 1)
            self.summaries[name] = _numeric_summary(values)
        classes = [v for r in records for v in r["class_mix"]]
        self.categories = {c: i for i, c in enumerate(sorted(set(classes)))}
        self.counts["class_mix"] = self.bin_class(np.asarray(classes, np.float64))
        self.summaries["class_mix"] = {"count": len(classes)}

    def bins_of(self, name: str) -> int:
        return len(self.categories) + 1 if name == "class_mix" else len(self.edges[name]) + 1

    def bin_class(self, values: np.ndarray) -> np.ndarray:
        unseen = len(self.categories)  # the last bin: classes the reference never had
        idx = [self.categories.get(float(v), unseen) for v in values]
        return np.bincount(np.asarray(idx, np.int64), minlength=unseen + 1)

    def count(self, name: str, values: list[float]) -> np.ndarray:
        arr = np.asarray(values, np.float64)
        if name == "class_mix":
            return self.bin_class(arr)
        return np.bincount(_bin(arr, self.edges[name]), minlength=len(self.edges[name]) + 1)


def _numeric_summary(values: np.ndarray) -> dict[str, Any]:
    if values.size == 0:
        return {"count": 0}
    return {"count": int(values.size), "mean": float(values.mean()), "std": float(values.std()),
            "min": float(values.min()), "max": float(values.max())}


def _class_summary(counts: Mapping[int, int]) -> dict[str, Any]:
    return {"count": int(sum(counts.values())), "classes": {str(k): int(v) for k, v in sorted(counts.items())}}


class DriftMonitor:
    """Scores how far the last ``window`` images (and their results) drifted from a reference.

    ``reference_size``: how many first observed results make the reference when none was given
    with :meth:`fit` / :meth:`from_folder`. ``window``: how many recent images are scored.
    ``bins``: quantile bins per numeric feature. ``min_window``: images needed before scoring.
    ``sample_stride``: image statistics use every n-th pixel in each axis. Thread-safe.
    """

    def __init__(self, *, reference_size: int = 200, window: int = 200, bins: int = 10, min_window: int = 50,
                 sample_stride: int = 8) -> None:
        self.reference_size = _positive_int(reference_size, "reference_size")
        self.window = _positive_int(window, "window")
        self.bins = _positive_int(bins, "bins")
        self.min_window = _positive_int(min_window, "min_window")
        self.sample_stride = _positive_int(sample_stride, "sample_stride")
        if self.bins < 2:
            raise InvalidInputError(f"bins must be at least 2, got {bins}")
        if self.min_window > self.window:
            raise InvalidInputError(f"min_window ({min_window}) cannot exceed window ({window})")
        self._lock = threading.Lock()
        self._reference: _Reference | None = None
        self._pending: list[_Record] = []
        self._records: deque[_Record] = deque()
        self._counts: dict[str, np.ndarray] = {}
        self._observed = 0

    # --- reference -------------------------------------------------------------------------

    @classmethod
    def from_folder(cls, predictor: Any, folder: Any, *, predict_options: Mapping[str, Any] | None = None,
                    **options: Any) -> "DriftMonitor":
        """A monitor whose reference is ``predictor``'s results on the images of ``folder`` (any
        source :meth:`Predictor.predict` reads), read as a stream so images are not all held."""
        monitor = cls(**options)
        monitor.fit(predictor.predict(source=folder, stream=True, **dict(predict_options or {})))
        return monitor

    def fit(self, results: Iterable[Any]) -> "DriftMonitor":
        """Take the reference from ``results`` (replacing any) and rescore the current window."""
        records = [_features(r, None, True, self.sample_stride) for r in results]
        if not records:
            raise InvalidInputError("a drift reference needs at least one result")
        reference = _Reference(records, self.bins)
        with self._lock:
            self._reference = reference
            self._pending = []
            self._recount()
        return self

    def _recount(self) -> None:
        ref = self._reference
        assert ref is not None
        self._counts = {name: np.zeros(ref.bins_of(name), np.int64) for name in FEATURES}
        for record in self._records:
            self._add(record, 1)

    def _add(self, record: _Record, sign: int) -> None:
        ref = self._reference
        assert ref is not None
        for name in FEATURES:
            if record[name]:
                self._counts[name] += sign * ref.count(name, record[name])

    # --- observing -------------------------------------------------------------------------

    def observe(self, result: Any, image: Any = None, *, bgr: bool = True) -> None:
        """Record one result of a Predictor (Detections or Classification). ``image``: the pixels
        it was predicted on (``HxWx3`` uint8, channel order per ``bgr``); by default the result's
        ``orig_img``. Until a reference is set, the first ``reference_size`` results become it."""
        record = _features(result, image, bgr, self.sample_stride)
        with self._lock:
            self._observed += 1
            if self._reference is None:
                self._pending.append(record)
                if len(self._pending) >= self.reference_size:
                    self._reference = _Reference(self._pending, self.bins)
                    self._pending = []
                    self._recount()
                return
            self._records.append(record)
            self._add(record, 1)
            while len(self._records) > self.window:
                self._add(self._records.popleft(), -1)

    def observe_many(self, results: Iterable[Any]) -> None:
        """:meth:`observe` each result."""
        for result in results:
            self.observe(result)

    def as_observer(self) -> Callable[[list[Any]], None]:
        """A callable for :meth:`Predictor.add_observer` that observes each result of each run."""
        def observer(results: list[Any]) -> None:
            self.observe_many(results)
        return observer

    # --- scoring ---------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Whether a reference is set and the window holds at least ``min_window`` images."""
        with self._lock:
            return self._reference is not None and len(self._records) >= self.min_window

    def _scores_locked(self) -> dict[str, float | None]:
        ref = self._reference
        if ref is None or len(self._records) < self.min_window:
            return {name: None for name in FEATURES}
        out: dict[str, float | None] = {}
        for name in FEATURES:
            window, reference = self._counts[name], ref.counts[name]
            if window.sum() == 0 and reference.sum() == 0:
                out[name] = 0.0  # the feature was never seen (e.g. no image pixels): nothing moved
            elif window.sum() == 0 or reference.sum() == 0:
                out[name] = None  # only one side has values: not comparable
            else:
                out[name] = _psi_counts(reference, window)
        return out

    def scores(self) -> dict[str, float | None]:
        """Feature -> PSI of the window against the reference; None until :attr:`ready`."""
        with self._lock:
            return self._scores_locked()

    @staticmethod
    def status(score: float | None) -> str:
        """``"ok"``, ``"moderate"``, ``"major"`` for a score; ``"warming_up"`` for None."""
        if score is None or math.isnan(score):
            return "warming_up"
        if score >= THRESHOLDS["major"]:
            return "major"
        return "moderate" if score >= THRESHOLDS["moderate"] else "ok"

    def report(self) -> dict[str, Any]:
        """A JSON-able report: method, readiness, sizes, thresholds and per-feature score, status
        and summaries of the reference and of the window."""
        with self._lock:
            scores = self._scores_locked()
            ref = self._reference
            records = list(self._records)
            ready = ref is not None and len(records) >= self.min_window
            features: dict[str, Any] = {}
            for name in FEATURES:
                if name == "class_mix":
                    window_summary = _class_summary(_class_counts(records))
                    reference_summary: dict[str, Any] | None = (
                        None if ref is None else {**ref.summaries[name], "classes": {
                            str(int(c)): int(ref.counts[name][i]) for c, i in ref.categories.items()}})
                else:
                    window_summary = _numeric_summary(np.asarray([v for r in records for v in r[name]], np.float64))
                    reference_summary = None if ref is None else ref.summaries[name]
                features[name] = {"score": scores[name], "status": self.status(scores[name]),
                                  "reference": reference_summary, "window": window_summary}
            return {"method": "psi", "ready": ready, "reference_size": 0 if ref is None else ref.size,
                    "window_size": len(records), "thresholds": dict(THRESHOLDS), "features": features}

    @property
    def window_size(self) -> int:
        """How many images the window holds now."""
        with self._lock:
            return len(self._records)

    def collector(self, model: str, version: str = "") -> Any:
        """A ``prometheus_client`` custom collector of this monitor, for ``registry.register``:
        gauges ``modelserve_drift_score{model,version,feature}`` (features not yet scored are left
        out) and ``modelserve_drift_window_images{model,version}``."""
        try:
            from prometheus_client.core import GaugeMetricFamily
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ServingUnavailableError(
                "modelserve drift metrics need prometheus-client: pip install modelserve[server]") from exc
        monitor = self

        class DriftCollector:
            def collect(self) -> Iterator[Any]:
                score = GaugeMetricFamily("modelserve_drift_score", "Population stability index of a feature "
                                          "over the recent window against the reference",
                                          labels=["model", "version", "feature"])
                for name, value in monitor.scores().items():
                    if value is not None:
                        score.add_metric([model, version, name], value)
                size = GaugeMetricFamily("modelserve_drift_window_images", "Images in the drift window",
                                         labels=["model", "version"])
                size.add_metric([model, version], monitor.window_size)
                yield score
                yield size

        return DriftCollector()


def _class_counts(records: list[_Record]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for record in records:
        for c in record["class_mix"]:
            counts[int(c)] = counts.get(int(c), 0) + 1
    return counts
