"""The InfluxQL query grafana-foundation-sdk lacks: a raw-InfluxQL target of Grafana's InfluxDB
datasource, as a ``Dataquery`` model plus builder (the SDK's documented extension path: a
``cogvariants.Dataquery`` with ``to_json`` and a ``cogbuilder.Builder`` around it).

    InfluxQL("SELECT mean(value) FROM reading WHERE $timeFilter GROUP BY time($__interval)")
        .ref_id("A").alias("$tag_sensor").format("time_series")

Only raw mode (``rawQuery: true``) is modelled: every twinwatch query is written out in full, so
the same text runs on InfluxDB 1.x, 2.x (DBRP mapping) and 3.x, and the tests can run it.
"""

from __future__ import annotations

import typing

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import runtime as cogruntime
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import dashboard

__all__ = ["InfluxQLQuery", "InfluxQL", "register"]

Format = typing.Literal["time_series", "table", "logs"]


class InfluxQLQuery(cogvariants.Dataquery):
    """A raw InfluxQL target, serialised as Grafana 11's InfluxDB datasource stores it."""

    def __init__(
        self,
        query: str = "",
        ref_id: str = "",
        result_format: Format = "time_series",
        alias: str | None = None,
        hide: bool | None = None,
        datasource: dashboard.DataSourceRef | None = None,
    ) -> None:
        self.query = query
        self.ref_id = ref_id
        self.result_format = result_format
        self.alias = alias
        self.hide = hide
        self.datasource = datasource

    def to_json(self) -> dict[str, object]:
        payload: dict[str, object] = {
            "refId": self.ref_id,
            "query": self.query,
            "rawQuery": True,
            "resultFormat": self.result_format,
        }
        if self.alias is not None:
            payload["alias"] = self.alias
        if self.hide is not None:
            payload["hide"] = self.hide
        if self.datasource is not None:
            payload["datasource"] = self.datasource
        return payload

    @classmethod
    def from_json(cls, data: dict[str, typing.Any]) -> InfluxQLQuery:
        ds = data.get("datasource")
        return cls(
            query=data.get("query", ""),
            ref_id=data.get("refId", ""),
            result_format=data.get("resultFormat", "time_series"),
            alias=data.get("alias"),
            hide=data.get("hide"),
            datasource=dashboard.DataSourceRef.from_json(ds) if ds else None,
        )


class InfluxQL(cogbuilder.Builder[InfluxQLQuery]):
    """Builder for ``InfluxQLQuery``; pass it to ``Panel.with_target`` like the SDK's own."""

    def __init__(self, query: str) -> None:
        self._internal = InfluxQLQuery(query=query)

    def build(self) -> InfluxQLQuery:
        return self._internal

    def ref_id(self, ref_id: str) -> typing.Self:
        self._internal.ref_id = ref_id
        return self

    def format(self, result_format: Format) -> typing.Self:
        self._internal.result_format = result_format
        return self

    def alias(self, alias: str) -> typing.Self:
        """Series name pattern, e.g. ``$tag_sensor`` (Grafana's InfluxQL alias syntax)."""
        self._internal.alias = alias
        return self

    def hide(self, hide: bool) -> typing.Self:
        self._internal.hide = hide
        return self

    def datasource(self, ref: dashboard.DataSourceRef) -> typing.Self:
        self._internal.datasource = ref
        return self


def register() -> None:
    """Let the SDK decode ``influxdb`` targets back into ``InfluxQLQuery`` (JSON round trips)."""
    cogruntime.register_dataquery_variant(
        cogruntime.DataqueryConfig(identifier="influxdb", from_json_hook=InfluxQLQuery.from_json)
    )
