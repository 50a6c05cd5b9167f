"""The pure engine: parse, plan, detect, alert lifecycle, liveness and security per shard.

Plain Python, no Bytewax: ``twinwatch.flows`` wires these into a dataflow, and the backtest and
the benchmarks call them directly.
"""
