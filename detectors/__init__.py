"""Online anomaly detectors: pure algorithms, no I/O, no clock.

One protocol per input shape (:mod:`twinwatch.detectors.base`): ``scalar`` detectors score the
readings of one series, ``vector`` detectors the aligned readings of an asset's sensors,
``event`` detectors the security events of an asset, ``log`` detectors its log lines. Every
detector has ``params()`` (derived from its constructor), ``to_state()`` and
``from_state(params, state)``. Build one by registry name::

    >>> from twinwatch.detectors import build
    >>> det = build("limits", high=0.5)  # drinking-water turbidity <= 0.5 NTU
    >>> det.update(0.0, 0.62) >= det.threshold
    True
    >>> build("pca_t2q", family="vector", n=3).n
    3

``REGISTRY`` holds the scalar detectors (what a sensor's ``detectors:`` may name);
``FAMILIES[family]`` the registry of each family. Names are unique across families.
See docs/detectors.md for what each detector is for, its state size and its speed.
"""

from __future__ import annotations

from typing import Any, cast

from twinwatch.detectors.base import FAMILIES as _FAMILY_NAMES
from twinwatch.detectors.base import (
    MAX_SCORE,
    Detector,
    EventDetector,
    LogDetector,
    Rule,
    Scalar,
    Vector,
    VectorDetector,
)
from twinwatch.detectors.burst import EventBurst
from twinwatch.detectors.consistency import Consistency
from twinwatch.detectors.cusum import EwmaCusum
from twinwatch.detectors.dosing import Dosing
from twinwatch.detectors.ensemble import Ensemble
from twinwatch.detectors.gaussian import WindowedGaussian
from twinwatch.detectors.group import Explanation, Role, roles_of
from twinwatch.detectors.hst import ScaledHST
from twinwatch.detectors.knn_cad import KnnCad
from twinwatch.detectors.likelihood import Likelihood
from twinwatch.detectors.limits import PhysicalLimits
from twinwatch.detectors.logtemplates import LogTemplates
from twinwatch.detectors.multivariate import IsolationForestDetector, PcaT2Q, VectorHST
from twinwatch.detectors.night_flow import NightFlow
from twinwatch.detectors.performance_ratio import PerformanceRatio
from twinwatch.detectors.response_ratio import ResponseRatio
from twinwatch.detectors.robust_z import RobustZ
from twinwatch.detectors.schedule import Schedule
from twinwatch.detectors.seasonal import Seasonal
from twinwatch.detectors.security import SecurityDetector
from twinwatch.detectors.stale import Gap, StaleTracker, Stuck

__all__ = [
    "FAMILIES",
    "MAX_SCORE",
    "REGISTRY",
    "VECTORS",
    "Detector",
    "Ensemble",
    "EventBurst",
    "EventDetector",
    "EwmaCusum",
    "Gap",
    "IsolationForestDetector",
    "KnnCad",
    "Likelihood",
    "LogDetector",
    "LogTemplates",
    "PcaT2Q",
    "PhysicalLimits",
    "RobustZ",
    "Rule",
    "Scalar",
    "ScaledHST",
    "Seasonal",
    "SecurityDetector",
    "StaleTracker",
    "Stuck",
    "Vector",
    "VectorDetector",
    "VectorHST",
    "WindowedGaussian",
    "build",
    "family_of",
    "register",
    # the asset-group detectors (vector family with roles, detectors/group.py)
    "Consistency",
    "Dosing",
    "Explanation",
    "NightFlow",
    "PerformanceRatio",
    "ResponseRatio",
    "Role",
    "Schedule",
    "roles_of",
]

#: family -> {registry name -> class}. ``StaleTracker`` is the liveness helper of
#: twinwatch.engine.liveness (it watches for series that stop reporting), not a detector.
FAMILIES: dict[str, dict[str, type]] = {f: {} for f in _FAMILY_NAMES}
#: The scalar detectors: what a sensor's ``detectors:`` may name.
REGISTRY = cast("dict[str, type[Detector]]", FAMILIES["scalar"])  # the same dict, typed
#: The vector detectors: what an asset group may name.
VECTORS = FAMILIES["vector"]


def register(*classes: type) -> None:
    """Add detector classes to their family's registry (``cls.family``, ``cls.name``)."""
    for cls in classes:
        name, family = cls.name, cls.family  # type: ignore[attr-defined]
        if family not in FAMILIES:
            raise ValueError(
                f"{cls.__name__}.family must be one of {_FAMILY_NAMES}, not {family!r}"
            )
        other = family_of(name)
        if other is not None and FAMILIES[other][name] is not cls:
            raise ValueError(f"detector name {name!r} is taken ({FAMILIES[other][name]})")
        FAMILIES[family][name] = cls


def family_of(name: str) -> str | None:
    """The family of the detector registered as ``name`` (None if unknown)."""
    return next((f for f, reg in FAMILIES.items() if name in reg), None)


register(
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
    KnnCad,
)
register(PcaT2Q, IsolationForestDetector, VectorHST)
# vector detectors with roles, for asset groups (issue #12)
register(Consistency, ResponseRatio, PerformanceRatio, NightFlow, Schedule, Dosing)
register(SecurityDetector)
register(LogTemplates)


def build(name: str, /, family: str = "scalar", **params: Any) -> Any:
    """Build the ``family`` detector registered as ``name`` with the given constructor arguments.

    Raises ValueError for an unknown name (listing the family's valid ones; naming the family a
    known name belongs to) or invalid parameters.
    """
    registry = FAMILIES.get(family)
    if registry is None:
        raise ValueError(f"unknown detector family {family!r}; families: {', '.join(FAMILIES)}")
    cls = registry.get(name)
    if cls is None:
        other = family_of(name)
        hint = f" ({name!r} is a {other} detector)" if other else ""
        raise ValueError(
            f"unknown detector {name!r}{hint}; valid {family} names: {', '.join(sorted(registry))}"
        )
    try:
        return cls(**params)
    except TypeError as exc:  # unknown / missing keyword
        raise ValueError(f"invalid parameters for detector {name!r}: {exc}") from None
