"""Online log templates (drain3) and three tests against each source's own baseline: rare
templates, template rate spikes and severity spikes. Quiet on normal logs by construction.

    lt = LogTemplates(window_s=600, alpha=1e-4, ...)
    lt.update(t, "sshd: Failed password for root from 192.0.2.7 port 22 ssh2", severity=6,
              source="sshd") -> (template id, template, [(rule, count, window_s, detail)])

Mining: drain3 (He et al., "Drain: An Online Log Parsing Approach with Fixed Depth Tree", ICWS
2017) groups lines into templates such as ``Failed password for <*> from <IP> port <NUM> ssh2``.
Variable parts are masked first, in one pass, with general rules (not per log type): URLs,
paths, host:port endpoints, IPv4/IPv6 addresses with ports, MAC addresses, UUIDs, hex numbers and
ids, dates, times and numbers (``benchmarks/logs_grouping.py`` measures the effect with loghub's
grouping accuracy).

Scoring, per source (the program's sensor), in event time:

- **rarity with decay**: each template keeps a count that halves every ``half_life_s``. A line
  is *novel* when its template is new or its decayed count fell below ``rare_count`` (not seen
  for weeks). Its weight is 1, ``warning_weight`` at warning severity and ``error_weight`` at
  err or worse: a new template at error severity weighs more than one at info.
- **a baseline of novelty per source**: the weighted novelty per ``window_s`` bucket is a
  Poisson count whose rate is learned as a Gamma posterior with the same forgetting (a source
  whose normal logs keep producing new templates, such as a desktop OS, has a high rate; a quiet
  appliance a low one). ``new_template`` fires when the bucket's count reaches the smallest
  ``k`` with predictive (negative binomial) tail probability P(X >= k) < ``alpha``: once per
  bucket. One new template on a quiet source is enough; on a busy one it takes a burst.
- ``template_rate``: the same test on each template's own count per bucket (at least
  ``rate_min_count`` lines).
- ``severity_spike``: the same test on the source's lines at err, crit, alert or emerg per
  bucket (at least ``severity_min_count``).

Learning is silent for a warm-up the user controls: a source reports nothing before it has
``warmup_lines`` lines *and* ``warmup_s`` seconds of history (and ``twinwatch logs --learn FILE``
pre-trains from an archive, see ``export()``/``load()``).

``to_state()`` is the pickled Drain tree plus plain tuples: a restored miner knows every
template, so a restart does not report old templates as new.
"""

from __future__ import annotations

import math
import pickle
import re
from typing import Any, ClassVar, TypeVar

from drain3.drain import Drain

from twinwatch.detectors.base import Settings

__all__ = ["LogTemplates", "mask", "NegBinTail"]

# General masks, one pass: the first alternative that matches at a position wins.
_MAY_VARY = re.compile(r"[\d/\\]")  # a token without digits or slashes is kept as it is
_MASK = re.compile(
    r"(?P<URL>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s\"'<>]+)"
    r"|(?P<UUID>\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b)"
    r"|(?P<PATH>(?<![\w.])(?:[A-Za-z]:\\|\\\\)[^\s\"'<>:]+|(?<![\w.>])(?:/[\w.@+-]+){2,}/?)"
    r"|(?P<ADDR>(?<![\w.-])(?:[\w-]+\.)+[\w-]+:\d{1,5}(?![\w.]))"
    r"|(?P<IP>(?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?::\d{1,5})?(?![\w.])"
    r"|(?<![\w:])(?=[0-9a-fA-F:]*\d)(?:[0-9a-fA-F]{0,4}:){2,7}[0-9a-fA-F]{0,4}(?![\w:]))"
    r"|(?P<MAC>\b[0-9a-fA-F]{2}(?:[:-][0-9a-fA-F]{2}){5}\b)"
    r"|(?P<HEX>\b0[xX][0-9a-fA-F]+\b|\b(?=[a-fA-F]*\d)(?=\d*[a-fA-F])[0-9a-fA-F]{8,}\b)"
    r"|(?P<DATE>\b\d{4}[-/]\d\d[-/]\d\d(?:[T ]\d\d:\d\d(?::\d\d(?:[.,]\d+)?)?)?\b)"
    r"|(?P<TIME>\b\d\d:\d\d:\d\d(?:[.,]\d+)?\b)"
    r"|(?P<NUM>(?<![A-Za-z0-9.])[-+]?\d+(?:\.\d+)?(?![A-Za-z0-9]))"
)


def _sub(m: re.Match) -> str:
    return f"<{m.lastgroup}>"


def mask(text: str) -> str:
    """``text`` with its variable parts replaced by ``<IP>``, ``<NUM>``, ``<PATH>``, ...
    Token by token (drain3 splits on spaces anyway): only tokens with a digit or a slash go
    through the masks, which keeps the cost per line a few microseconds."""
    tokens = text.split(" ")
    for i, token in enumerate(tokens):
        if _MAY_VARY.search(token):
            tokens[i] = _MASK.sub(_sub, token)
    return " ".join(tokens)


class NegBinTail:
    """The smallest count k with P(X >= k) < alpha for X ~ negative binomial(r, p), the law of
    an overdispersed count: mean r (1 - p) / p, variance mean / p."""

    @staticmethod
    def threshold(r: float, p: float, alpha: float, cap: int = 1_000_000) -> float:
        log_q = math.log1p(-p)
        log_pmf = r * math.log(p)
        cdf = math.exp(log_pmf)
        j = 0
        while 1.0 - cdf >= alpha and j < cap:
            j += 1
            log_pmf += math.log((j - 1 + r) / j) + log_q
            cdf += math.exp(log_pmf)
        return float(j + 1)

    @staticmethod
    def of_moments(mean: float, var: float) -> tuple[float, float]:
        """(r, p) with this mean and variance (a near-Poisson r when var <= mean)."""
        mean = max(mean, 1e-9)
        r = mean * mean / (var - mean) if var > mean * 1.000001 else 1e6
        return r, r / (r + mean)


class _Rate:
    """Counts per bucket of one stream: their mean and variance with exponential forgetting
    (weights halve every ``half_life_s``), which give the bucket's threshold count."""

    __slots__ = ("w", "s1", "s2", "bucket", "count", "limit", "fired")

    def __init__(self, w: float = 0.0, s1: float = 0.0, s2: float = 0.0):
        self.w, self.s1, self.s2 = w, s1, s2  # decayed bucket count, sum, sum of squares
        self.bucket: int | None = None
        self.count = 0.0
        # (mean + 2 sd, threshold or None): the exact threshold is computed only when the count
        # passes the first (a 1e-4 tail lies well beyond 2 sd), so a quiet bucket costs nothing
        self.limit: tuple[float, float | None] = (math.inf, None)
        self.fired = False

    def add(self, bucket: int, weight: float, lt: LogTemplates, floor: float) -> float:
        """Count ``weight`` in ``bucket``; the bucket's count if it just crossed its threshold,
        else 0."""
        if bucket != self.bucket:
            self._close(bucket, lt)
        self.count += weight
        if self.fired or self.count < floor or self.count < self.limit[0]:
            return 0.0
        exact = self.limit[1]
        if exact is None:
            exact = self._threshold(lt)
            self.limit = (self.limit[0], exact)
        if self.count >= exact:
            self.fired = True
            return self.count
        return 0.0

    def _threshold(self, lt: LogTemplates) -> float:
        return NegBinTail.threshold(*NegBinTail.of_moments(*self.moments(lt)), lt.alpha)

    def _close(self, bucket: int, lt: LogTemplates) -> None:
        f = lt.bucket_decay
        if self.bucket is not None and bucket > self.bucket:
            c = self.count
            self.w, self.s1, self.s2 = self.w * f + 1.0, self.s1 * f + c, self.s2 * f + c * c
            empty = min(bucket - self.bucket - 1, 1_000_000)  # buckets without a line
            if empty:
                fe = f**empty
                self.w = self.w * fe + (1.0 - fe) / (1.0 - f)
                self.s1 *= fe
                self.s2 *= fe
        self.bucket, self.count, self.fired = bucket, 0.0, False
        mean, var = self.moments(lt)
        self.limit = (mean + 2.0 * math.sqrt(var), None)

    def moments(self, lt: LogTemplates) -> tuple[float, float]:
        """Mean and variance per bucket, with a weak overdispersed prior (one bucket)."""
        w0, m0, v0 = 1.0, lt.prior_mean, lt.prior_var
        w = self.w + w0
        mean = (self.s1 + w0 * m0) / w
        return mean, max((self.s2 + w0 * (v0 + m0 * m0)) / w - mean * mean, 0.0)

    def closed(self, bucket: int, lt: LogTemplates) -> list:
        """The moments with every bucket before ``bucket`` closed (for ``export``)."""
        r = type(self).restore(self.state())
        if r.bucket is not None and bucket > r.bucket:
            r._close(bucket, lt)
        return [*r.state()[:3], bucket]

    def state(self) -> tuple:
        return (self.w, self.s1, self.s2, self.bucket, self.count, self.limit, self.fired)

    @classmethod
    def restore(cls, state: tuple) -> _Rate:
        r = cls()
        r.w, r.s1, r.s2, r.bucket, r.count, r.limit, r.fired = state
        return r


class _Novelty(_Rate):
    """Weighted novelty per bucket as a Poisson count whose rate has a Gamma posterior (decayed
    count ``a`` over decayed exposure ``b`` seconds, plus a prior of one novelty per hour).
    Novelty is sparse, so its dispersion is not estimated; it is learned after the warm-up only
    (before it, every template is new)."""

    __slots__ = ("a", "b")

    def __init__(self, a: float = 0.0, b: float = 0.0):
        super().__init__()
        self.a, self.b = a, b

    def _close(self, bucket: int, lt: LogTemplates) -> None:
        f, w = lt.bucket_decay, lt.window_s
        if self.bucket is not None and bucket > self.bucket:
            gap = min(bucket - self.bucket, 1_000_000)
            fg = f**gap
            self.a = self.a * fg + self.count * f ** (gap - 1)
            self.b = self.b * fg + w * (1.0 - fg) / (1.0 - f)
        self.bucket, self.count, self.fired = bucket, 0.0, False
        mean, var = self.moments(lt)
        self.limit = (mean + 2.0 * math.sqrt(var), None)

    def _threshold(self, lt: LogTemplates) -> float:
        a, b = self.a + 1.0, self.b + 6 * lt.window_s  # prior: one novelty in six buckets
        return NegBinTail.threshold(a, b / (b + lt.window_s), lt.alpha)

    def moments(self, lt: LogTemplates) -> tuple[float, float]:
        """Predictive mean and variance per bucket (negative binomial)."""
        a, b, w = self.a + 1.0, self.b + 6 * lt.window_s, lt.window_s
        mean = a * w / b
        return mean, mean + mean * mean / a

    def closed(self, bucket: int, lt: LogTemplates) -> list:
        r = _Novelty.restore(self.state())
        if r.bucket is not None and bucket > r.bucket:
            r._close(bucket, lt)
        return [r.a, r.b, bucket]

    def reset(self) -> None:
        self.a = self.b = self.count = 0.0
        self.bucket, self.limit, self.fired = None, (math.inf, None), False

    def state(self) -> tuple:
        return (self.a, self.b, self.bucket, self.count, self.limit, self.fired)

    @classmethod
    def restore(cls, state: tuple) -> _Novelty:
        r = cls()
        r.a, r.b, r.bucket, r.count, r.limit, r.fired = state
        return r


R = TypeVar("R", bound=_Rate)


class _Source:
    __slots__ = ("first_t", "lines", "warm", "novelty", "severity")

    def __init__(self, first_t: float):
        self.first_t = first_t
        self.lines = 0
        self.warm = False
        self.novelty = _Novelty()
        self.severity = _Rate()


class LogTemplates(Settings):
    """The ``log`` family's detector (registered as ``templates``): see the module docstring."""

    name: ClassVar[str] = "templates"
    family: ClassVar[str] = "log"

    def __init__(
        self,
        sim_th: float = 0.7,
        depth: int = 4,
        max_children: int = 100,
        max_clusters: int = 2000,
        warmup_lines: int = 200,
        warmup_s: float = 3600.0,
        half_life_s: float = 7 * 86400.0,
        rare_count: float = 0.05,
        window_s: float = 600.0,
        alpha: float = 1e-4,
        error_weight: float = 4.0,
        warning_weight: float = 2.0,
        rate_min_count: int = 20,
        severity_min_count: int = 5,
        state_path: str | None = None,  # used by the application (twinwatch logs --learn)
    ) -> None:
        if not 0 < sim_th < 1 or depth < 3 or window_s <= 0 or half_life_s <= 0:
            raise ValueError("need 0 < sim_th < 1, depth >= 3, window_s > 0, half_life_s > 0")
        if not 0 < alpha < 0.5:
            raise ValueError(f"alpha must be in (0, 0.5), got {alpha!r}")
        for k, v in list(locals().items()):  # each setting under its own name, for params()
            if k not in ("self", "__class__"):
                setattr(self, k, v)
        self.drain = Drain(
            depth=depth, sim_th=sim_th, max_children=max_children, max_clusters=max_clusters
        )
        self.warmup_lines = warmup_lines
        self.warmup_s = warmup_s
        self.half_life_s = half_life_s
        self.rare_count = rare_count
        self.window_s = window_s
        self.alpha = alpha
        self.weights = (error_weight, warning_weight)
        self.rate_min = rate_min_count
        self.severity_min = severity_min_count
        self.bucket_decay = 0.5 ** (window_s / half_life_s)
        self.prior_mean, self.prior_var = 1.0, 4.0  # weak and overdispersed: one bucket
        self.lines = 0
        self.t_last = -math.inf
        # masked line -> (its cluster, template generation then): a cache, not state
        self._seen: dict[str, tuple[int, int]] = {}
        self._generation = 0
        self._sources: dict[str, _Source] = {}
        # template id -> [decayed count, time of last line, rate per bucket]
        self._templates: dict[int, list] = {}

    @property
    def template_count(self) -> int:
        return len(self.drain.clusters)

    def mine(self, text: str) -> tuple[int, str, str]:
        """(template id, template, change type) of one line, learning it.

        A masked line seen since the last change of any template goes straight to the cluster
        it went to then: with the same tree and templates Drain would make the same choice, so
        this is exact (and the cluster is touched in Drain's LRU as Drain touches it)."""
        masked = mask(text)
        hit = self._seen.get(masked)
        if hit is not None and hit[1] == self._generation:
            cluster = self.drain.id_to_cluster.get(hit[0])
            if cluster is not None:
                cluster.size += 1
                self.drain.id_to_cluster[hit[0]]  # noqa: B018 - the LRU touch Drain makes
                return hit[0], cluster.get_template(), "none"
        cluster, change = self.drain.add_log_message(masked)
        if change != "none":
            self._generation += 1
        if len(self._seen) >= 16384:
            self._seen.clear()
        self._seen[masked] = (cluster.cluster_id, self._generation)
        return cluster.cluster_id, cluster.get_template(), change

    def update(
        self, t: float, text: str, severity: int | None = None, source: str = ""
    ) -> tuple[int, str, list[tuple[str, float, float, str]]]:
        """Mine one line at time ``t`` (epoch s) of ``source``; its template id, template and
        findings ``(rule, count, window_s, detail)``."""
        cid, template, change = self.mine(text)
        self.lines += 1
        if not math.isfinite(t):
            return cid, template, []
        self.t_last = max(self.t_last, t)
        src = self._sources.get(source)
        if src is None:
            if len(self._sources) >= 4096:
                self._sources.clear()
            src = self._sources[source] = _Source(t)
        src.lines += 1
        tpl = self._templates.get(cid)
        if tpl is None:
            if len(self._templates) >= 2 * self.drain.max_clusters:  # drop evicted templates
                live = self.drain.id_to_cluster
                self._templates = {k: v for k, v in self._templates.items() if k in live}
            tpl = self._templates[cid] = [0.0, t, _Rate()]
        count = tpl[0] * 0.5 ** (max(t - tpl[1], 0.0) / self.half_life_s)
        novel = change == "cluster_created" or count < self.rare_count
        tpl[0], tpl[1] = count + 1.0, max(t, tpl[1])
        bucket = math.floor(t / self.window_s)
        warm = src.warm
        if not warm and src.lines > self.warmup_lines and t - src.first_t >= self.warmup_s:
            src.warm = True  # the novelty baseline starts now: before, every template was new
            src.novelty.reset()
        error = severity is not None and severity <= 3
        weight = 1.0
        if severity is not None and severity <= 4:
            weight = self.weights[0] if error else self.weights[1]
        found = []
        n = src.novelty.add(bucket, weight if novel else 0.0, self, 0.0) if src.warm else 0.0
        if n and warm and novel:
            found.append(
                (
                    "new_template",
                    n,
                    self.window_s,
                    f"rare templates of weight {n:g} in {self.window_s:g} s "
                    f"(usual {src.novelty.moments(self)[0]:.2g}): "
                    f"{template}",
                )
            )
        n = tpl[2].add(bucket, 1.0, self, float(self.rate_min))
        if n and warm:
            found.append(
                (
                    "template_rate",
                    n,
                    self.window_s,
                    f"{n:g} lines in {self.window_s:g} s (usual "
                    f"{tpl[2].moments(self)[0]:.2g}): {template}",
                )
            )
        n = src.severity.add(bucket, 1.0 if error else 0.0, self, float(self.severity_min))
        if n and warm and error:
            found.append(
                (
                    "severity_spike",
                    n,
                    self.window_s,
                    f"{n:g} lines at err or worse in {self.window_s:g} s (usual "
                    f"{src.severity.moments(self)[0]:.2g})",
                )
            )
        return cid, template, found

    # --- snapshots and pre-training ------------------------------------------------------------

    def to_state(self) -> tuple:
        return (
            pickle.dumps(self.drain, protocol=pickle.HIGHEST_PROTOCOL),
            (self.lines, self.t_last),
            tuple(
                (k, s.first_t, s.lines, s.warm, s.novelty.state(), s.severity.state())
                for k, s in self._sources.items()
            ),
            tuple((k, c, tl, r.state()) for k, (c, tl, r) in self._templates.items()),
        )

    @classmethod
    def from_state(cls, params: dict, state: tuple) -> LogTemplates:
        lt = cls(**params)
        blob, (lt.lines, lt.t_last), sources, templates = state
        lt.drain = pickle.loads(blob)
        for k, first_t, lines, warm, nov, sev in sources:
            s = lt._sources[k] = _Source(first_t)
            s.lines, s.warm = lines, warm
            s.novelty, s.severity = _Novelty.restore(nov), _Rate.restore(sev)
        lt._templates = {k: [c, tl, _Rate.restore(r)] for k, c, tl, r in templates}
        return lt

    def export(self) -> dict:
        """The learned templates and baselines as plain JSON-able data (``--learn``): the
        templates' text, not the pickled tree, so a learned file is safe to load and to read.
        Counts per bucket are closed up to the last line's bucket, so a burst seen once (a
        nightly job) is part of its template's history."""
        end = math.floor(self.t_last / self.window_s) + 1 if math.isfinite(self.t_last) else 0
        empty: list[Any] = [0.0, 0.0, _Rate()]
        return {
            "templates": [
                {
                    "template": c.get_template(),
                    "size": c.size,
                    "count": tpl[0],
                    "last": tpl[1],
                    "rate": tpl[2].closed(end, self),
                }
                for c in self.drain.clusters
                for tpl in [self._templates.get(c.cluster_id) or empty]
            ],
            "sources": {
                k: {
                    "first_t": s.first_t,
                    "lines": s.lines,
                    "warm": s.warm,
                    "novelty": s.novelty.closed(end, self),
                    "severity": s.severity.closed(end, self),
                }
                for k, s in self._sources.items()
            },
        }

    def load(self, learned: dict) -> None:
        """Pre-train from ``export()`` data: the templates become known (rebuilt through drain),
        with their counts, and the sources' baselines and warm-up carry over."""
        for row in learned.get("templates", []):
            cluster, _ = self.drain.add_log_message(str(row["template"]))
            cluster.size = max(cluster.size, int(row.get("size", 1)))
            self._templates[cluster.cluster_id] = [
                float(row.get("count", 1.0)),
                float(row.get("last", 0.0)),
                _restore(_Rate, row.get("rate")),
            ]
        for k, s in learned.get("sources", {}).items():
            src = self._sources[k] = _Source(float(s["first_t"]))
            src.lines, src.warm = int(s["lines"]), bool(s.get("warm"))
            src.novelty = _restore(_Novelty, s.get("novelty"))
            src.severity = _restore(_Rate, s.get("severity"))


def _restore(cls: type[R], row) -> R:
    """A rate from ``export()``: its moments and the bucket they were closed at."""
    if not row:
        return cls()
    *moments, bucket = row
    r = cls(*map(float, moments))
    r.bucket = int(bucket)
    return r
