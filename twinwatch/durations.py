"""The one duration grammar of twinwatch: ``30s``, ``5m``, ``2h``, ``1d``, ``1w``, ``500ms``.

    parse_duration(text) -> timedelta        (raises BadDuration, a ConfigError)

A positive whole number and one unit (ms, s, m, h, d, w), as InfluxQL and polars spell them, so
the same text works in ``twinwatch query --every`` (which hands it to InfluxQL's ``GROUP BY
time()``), ``--chunk`` and ``twinwatch alerts silence|ack --for``. Fractions (``1.5h``) and
compounds (``1h30m``) are refused: InfluxQL would refuse them too; write ``90m``.
"""

from __future__ import annotations

import re
from datetime import timedelta

from twinwatch.config import ConfigError

__all__ = ["BadDuration", "parse_duration", "UNITS"]

UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"^(\d+)(ms|s|m|h|d|w)$")


class BadDuration(ConfigError):
    """Not a duration in the grammar above; the message shows examples."""


def parse_duration(text: str) -> timedelta:
    m = _DURATION.match(text.strip())
    if m is None or int(m[1]) == 0:
        raise BadDuration(
            f"bad duration {text!r}: expected a positive whole number and a unit "
            "(ms, s, m, h, d, w), e.g. 30s, 5m, 2h, 1d, 1w"
        )
    return timedelta(seconds=int(m[1]) * UNITS[m[2]])
