"""Monitoring of modelserve: Prometheus metrics of Predictors and the server (:mod:`.metrics`) and
data-drift monitoring of their inputs and outputs (:mod:`.drift`, a population stability index per
feature over a sliding window)."""

from .drift import DriftMonitor, categorical_psi, psi
from .metrics import Metrics, instrument

__all__ = ["Metrics", "instrument", "DriftMonitor", "psi", "categorical_psi"]
