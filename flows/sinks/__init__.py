"""Bytewax sinks: InfluxDB (``influx``), Alertmanager (``alertmanager``), line protocol encoding."""
