"""Per-series online anomaly detectors: pure algorithms, no I/O, no clock.

Every detector follows :class:`~twinwatch.detectors.base.Detector`: ``update(t, x) -> score``
scores a reading and then learns it, ``score >= threshold`` is a hit, and ``to_state()`` /
``from_state(params, state)`` snapshot and restore it. Build one by registry name::

    >>> from detectors import build
    >>> det = build("limits", high=0.5)  # drinking-water turbidity <= 0.5 NTU
    >>> det.update(0.0, 0.62) >= det.threshold
    True

See docs/detectors.md for what each detector is for, its state size and its speed.
"""

from __future__ import annotations

from twinwatch.detectors.base import MAX_SCORE, Detector
from twinwatch.detectors.burst import EventBurst
from twinwatch.detectors.cusum import EwmaCusum
from twinwatch.detectors.ensemble import DriftReset, Ensemble
from twinwatch.detectors.gaussian import WindowedGaussian
from twinwatch.detectors.hst import ScaledHST
from twinwatch.detectors.knn_cad import KnnCad
from twinwatch.detectors.likelihood import Likelihood
from twinwatch.detectors.limits import PhysicalLimits
from twinwatch.detectors.robust_z import RobustZ
from twinwatch.detectors.seasonal import Seasonal
from twinwatch.detectors.stale import Gap, StaleTracker, Stuck

__all__ = [
    "MAX_SCORE",
    "REGISTRY",
    "Detector",
    "DriftReset",
    "Ensemble",
    "EventBurst",
    "EwmaCusum",
    "KnnCad",
    "Gap",
    "Likelihood",
    "PhysicalLimits",
    "RobustZ",
    "ScaledHST",
    "Seasonal",
    "StaleTracker",
    "Stuck",
    "WindowedGaussian",
    "build",
]

#: Registry name -> detector class (``StaleTracker`` is not a per-series detector and is absent).
REGISTRY: dict[str, type[Detector]] = {
    cls.name: cls
    for cls in (
        PhysicalLimits,
        RobustZ,
        EwmaCusum,
        ScaledHST,
        Stuck,
        Gap,
        EventBurst,
        WindowedGaussian,
        Likelihood,
        Seasonal,
        Ensemble,
        DriftReset,
        KnnCad,
    )
}


def build(name: str, **params) -> Detector:
    """Build the detector registered as ``name`` with the given constructor arguments.

    Raises ValueError for an unknown name (listing the valid ones) or invalid parameters.
    """
    try:
        cls = REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown detector {name!r}; valid names: {', '.join(sorted(REGISTRY))}"
        ) from None
    try:
        return cls(**params)
    except TypeError as exc:  # unknown / missing keyword
        raise ValueError(f"invalid parameters for detector {name!r}: {exc}") from None
