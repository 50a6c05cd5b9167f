"""Online log-template mining with drain3, new-template findings and per-template rate anomalies.

    lt = LogTemplates(sim_th=0.4, depth=4)
    lt.update(t, "sshd: Failed password for root from 192.0.2.7 port 22 ssh2")
        -> (template id, template,
            [("new_template", 1.0, template) | ("template_rate", n, template)])

drain3 (Drain: He et al., "Drain: An Online Log Parsing Approach with Fixed Depth Tree", ICWS
2017) groups lines into templates such as ``Failed password for <*> from <IP> port <NUM> ssh2``.
IPs, numbers and hex values are masked first, so they never make a template of their own.

- ``new_template``: a line made a new template (after ``warmup_lines`` lines of learning).
- ``template_rate``: a template's count in the current ``rate_bucket_s`` bucket reached both
  ``rate_min_count`` and ``rate_factor`` times its EWMA mean per bucket (after
  ``rate_warmup_buckets`` buckets of history). Reported once per bucket.

``to_state()`` is the pickled Drain tree plus plain tuples: a restored miner knows every template,
so a restart does not report old templates as new.
"""

from __future__ import annotations

import math
import pickle
from typing import ClassVar

from drain3 import TemplateMiner
from drain3.masking import MaskingInstruction
from drain3.template_miner_config import TemplateMinerConfig

from twinwatch.detectors.base import Settings

__all__ = ["LogTemplates"]

_MASKS = (  # (regex, mask): the usual drain3 masking, applied before mining
    (r"((?<=[^A-Za-z0-9])|^)(([0-9a-f]{2,}:){3,}([0-9a-f]{2,}))((?=[^A-Za-z0-9])|$)", "ID"),
    (r"((?<=[^A-Za-z0-9])|^)(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})((?=[^A-Za-z0-9])|$)", "IP"),
    (r"((?<=[^A-Za-z0-9])|^)(0x[a-f0-9A-F]+)((?=[^A-Za-z0-9])|$)", "HEX"),
    (r"((?<=[^A-Za-z0-9])|^)([\-\+]?\d+)((?=[^A-Za-z0-9])|$)", "NUM"),
)
_ALPHA = 0.1  # EWMA weight of the newest bucket in a template's mean rate


class LogTemplates(Settings):
    """The ``log`` family's detector (registered as ``templates``): see the module docstring."""

    name: ClassVar[str] = "templates"
    family: ClassVar[str] = "log"

    def __init__(
        self,
        sim_th: float = 0.4,
        depth: int = 4,
        max_children: int = 100,
        max_clusters: int = 2000,
        warmup_lines: int = 0,
        rate_bucket_s: float = 60.0,
        rate_factor: float = 10.0,
        rate_min_count: int = 50,
        rate_warmup_buckets: int = 10,
    ) -> None:
        if not 0 < sim_th < 1 or depth < 3 or rate_bucket_s <= 0 or rate_factor <= 0:
            raise ValueError("need 0 < sim_th < 1, depth >= 3, rate_bucket_s > 0, rate_factor > 0")
        # each setting under its own name, for params()
        self.sim_th, self.depth = sim_th, depth
        self.max_children, self.max_clusters = max_children, max_clusters
        self.rate_bucket_s, self.rate_factor = rate_bucket_s, rate_factor
        self.rate_min_count, self.rate_warmup_buckets = rate_min_count, rate_warmup_buckets
        cfg = TemplateMinerConfig()
        cfg.drain_sim_th, cfg.drain_depth = sim_th, depth
        cfg.drain_max_children, cfg.drain_max_clusters = max_children, max_clusters
        cfg.masking_instructions = [MaskingInstruction(r, m) for r, m in _MASKS]
        cfg.profiling_enabled = False
        self.miner = TemplateMiner(persistence_handler=None, config=cfg)
        self.warmup_lines = warmup_lines
        self.bucket_s = rate_bucket_s
        self.factor = rate_factor
        self.min_count = rate_min_count
        self.warmup_buckets = rate_warmup_buckets
        self.lines = 0
        # template id -> [bucket index, count in it, EWMA mean per bucket, buckets seen, reported]
        self._rates: dict[int, list] = {}

    @property
    def template_count(self) -> int:
        return len(self.miner.drain.clusters)

    def update(self, t: float, text: str) -> tuple[int, str, list[tuple[str, float, str]]]:
        """Mine one line at time ``t``; return its template id, template and findings."""
        r = self.miner.add_log_message(text)
        self.lines += 1
        cid, template = r["cluster_id"], r["template_mined"]
        found = []
        if r["change_type"] == "cluster_created" and self.lines > self.warmup_lines:
            found.append(("new_template", 1.0, template))
        n = self._count(cid, t)
        if n:
            found.append(("template_rate", float(n), template))
        return cid, template, found

    def _count(self, cid: int, t: float) -> int:
        """Count the line in its template's bucket; the count if it is a rate anomaly, else 0."""
        b = math.floor(t / self.bucket_s) if math.isfinite(t) else 0
        rate = self._rates.get(cid)
        if rate is None:
            if len(self._rates) >= 2 * self.miner.drain.max_clusters:  # drop evicted templates
                live = self.miner.drain.id_to_cluster
                self._rates = {k: v for k, v in self._rates.items() if k in live}
            rate = self._rates[cid] = [b, 0, 0.0, 0, False]
        elif b > rate[0]:  # close the bucket, then decay over the empty ones in between
            gap = b - rate[0]
            mean = rate[2] + _ALPHA * (rate[1] - rate[2])
            rate[:] = [b, 0, mean * (1 - _ALPHA) ** (gap - 1), rate[3] + gap, False]
        rate[1] += 1
        if (
            not rate[4]
            and rate[3] >= self.warmup_buckets
            and rate[1] >= self.min_count
            and rate[1] >= self.factor * rate[2]
        ):
            rate[4] = True
            return rate[1]
        return 0

    def to_state(self) -> tuple:
        return (
            pickle.dumps(self.miner.drain, protocol=pickle.HIGHEST_PROTOCOL),
            self.lines,
            tuple((k, *v) for k, v in self._rates.items()),
        )

    @classmethod
    def from_state(cls, params: dict, state: tuple) -> LogTemplates:
        lt = cls(**params)
        blob, lt.lines, rates = state
        lt.miner.drain = pickle.loads(blob)
        lt._rates = {k: list(v) for k, *v in rates}
        return lt
