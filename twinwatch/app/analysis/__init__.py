"""The analysts' toolkit: InfluxDB -> polars, incident reports, backtests (docs/analysts.md).

    query      Influx: InfluxQL -> typed polars frames, chunked, with progress; the errors
    helpers    readings, rollups, scores, alert history (MTTA/MTTR), noisy sensors, dead letters
    report     self-contained HTML incident report with PNG figures
    backtest   a detector configuration over stored history, scored against incident labels
    commands   the ``twinwatch query|report|backtest`` commands (argparse only until run)

Nothing is imported here, so ``twinwatch --help`` does not load polars or matplotlib.
"""
