"""NAB-compatible benchmark: online runner (:mod:`.run`), corpus I/O (:mod:`.corpus`), scorer."""

__all__: list[str] = []
