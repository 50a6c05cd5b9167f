"""Contextual Anomaly Detector, open-source edition (CAD-OSE), as a pure online detector.

The algorithm is Mikhail Smirnov's CAD-OSE (https://github.com/smirmik/CAD, shipped with NAB as
``nab/detectors/context_ose``; 69.9 on NAB's 58-file corpus). This is a re-implementation of that
algorithm for Python 3 and this package's protocol; see docs/detectors.md for where it departs.
"""

from __future__ import annotations

import math
import pickle
from collections import deque
from typing import ClassVar

from detectors.base import check_finite, check_int, check_positive

__all__ = ["CadOse"]

_SENSOR = 65536  # fact ids of the encoded value: _SENSOR + 2 * bit_position + bit
_NEURON = 2**31  # fact ids of active contexts fed back as input ("neurons")


class CadOse:
    """CAD-OSE: learns which *contexts* (a left fact set followed by a right fact set) recur and
    scores a reading by how poorly the contexts active before it predicted it.

    Each reading is encoded into ``value_bits`` bits (``2**value_bits`` levels between the running
    min and max; each bit position/value pair is a *fact*). A context is a pair (facts of the
    previous step plus the ids of its active contexts, facts of this step); the memory keeps every
    context seen, split into shared left and right *semi-contexts*. Each step:

    1. the prediction made last step (facts of the best-predicting fully matched contexts) is
       compared with the new facts; a missed fact adds ``2**bit_position`` to the error;
    2. contexts whose left part matched last step are scored on how much of their right part
       the new facts match; those matching fully become active, and new contexts are formed from
       partial overlaps (left part at most ``max_left_semi_contexts`` facts);
    3. score = ``(1 - share of selected contexts that became active + share of candidate contexts
       that were new) / 2`` if the prediction missed anything, else 0.

    After a score >= ``base_threshold`` the detector stays silent for ``rest_period`` readings
    (one alarm per event, as in NAB's detector).

    Departures from NAB's copy, none of them in the learning rule: the value range is the
    running min/max of the readings so far, including this one (NAB reads the whole file's
    min/max in advance); ``rest_period`` is a fixed setting (NAB uses the probationary
    period / 5, which depends on the file's length); semi-contexts are keyed by their fact tuples
    (not by their hashes); only semi-contexts that share a fact with the input are visited.

    The memory grows with the number of distinct contexts (a few thousand for a NAB file);
    ``to_state()`` pickles it (tens to hundreds of kB): use on selected series.

    Examples
    --------
    >>> det = CadOse()
    >>> scores = [det.update(float(t), float(t % 4)) for t in range(400)]
    >>> max(scores[200:])  # a learned repeating pattern is fully predicted
    0.0
    >>> det.update(400.0, 3.0) > 0.0  # after 3 comes 0, not 3 again
    True
    """

    name: ClassVar[str] = "cad_ose"

    def __init__(
        self,
        threshold: float = 0.75,
        base_threshold: float = 0.75,
        rest_period: int = 120,
        max_left_semi_contexts: int = 7,
        max_active_neurons: int = 15,
        value_bits: int = 3,
    ) -> None:
        self.threshold = check_positive("threshold", threshold)
        self.base_threshold = check_finite("base_threshold", base_threshold)
        self.rest_period = check_int("rest_period", rest_period, 1)
        self.max_left_semi_contexts = check_int("max_left_semi_contexts", max_left_semi_contexts, 1)
        self.max_active_neurons = check_int("max_active_neurons", max_active_neurons, 1)
        self.value_bits = check_int("value_bits", value_bits, 1)
        self._m: dict | None = None  # the whole learned state, built on the first update

    # -- state ------------------------------------------------------------------------------
    def _new_memory(self) -> dict:
        return {
            "lo": math.inf, "hi": -math.inf,
            "facts": ({}, {}),  # per side: fact -> semi-contexts containing it
            "semi_ids": ({}, {}),  # per side: fact tuple -> semi-context index
            "semis": ([], []),  # per side: [crossed facts, n facts, n crossed, (left) {rid: cid}]
            "crossed": [[], []],  # per side: semi-contexts crossed by the last input
            # contexts: [selected, predicted, activations, right facts, zero level, lkey, rkey]
            "contexts": [],
            "new_cid": False,  # False == 0: as in NAB, context 0 is skipped when nothing is new
            "left_facts": (),
            "predicted": set(),
            "history": deque([1.0], maxlen=self.rest_period),
        }

    def update(self, t: float, x: float) -> float:
        """Score ``x`` by how badly the contexts active before it predicted it, then learn it."""
        if not math.isfinite(x):
            return 0.0
        m = self._m
        if m is None:
            m = self._m = self._new_memory()
        if x < m["lo"]:
            m["lo"] = x
        if x > m["hi"]:
            m["hi"] = x
        max_bin = 2**self.value_bits - 1
        span = m["hi"] - m["lo"] or float(max_bin)
        level = min(max(int((x - m["lo"]) / (span / max_bin)), 0), max_bin)
        facts = tuple(_SENSOR + 2 * b + ((level >> b) & 1) for b in range(self.value_bits))
        missed = sum(2 ** ((f - _SENSOR) // 2) for f in facts if f not in m["predicted"])
        m["predicted"], active_share, new_share = self._step(m, facts)
        current = (1.0 - active_share + new_share) / 2.0 if missed > 0 else 0.0
        score = current if max(m["history"]) < self.base_threshold else 0.0
        m["history"].append(current)
        return score

    # -- the context memory (CAD-OSE's step / contextCrosser / getContextByFacts) ------------
    def _step(self, m: dict, facts: tuple) -> tuple[set, float, float]:
        candidates = set()
        new_flag = False
        if m["left_facts"] and facts:
            zero = (m["left_facts"], facts)
            candidates.add(zero)
            new_flag = self._remember(m, [zero], zero_level=True)
        active, n_selected, potential = self._cross_right(m, facts, new_flag)
        candidates.update(potential)
        active_share = len(active) / n_selected if n_selected else 0.0
        active.sort(key=lambda c: (c[1], c[2], c[3]))
        neurons = {_NEURON + c[0] for c in active[-self.max_active_neurons:]}
        m["left_facts"] = tuple(sorted(set(facts) | neurons))
        n_new, predicted = self._cross_left(m, m["left_facts"], potential)
        n_new += 1 if new_flag else 0
        new_share = n_new / len(candidates) if new_flag and candidates else 0.0
        return predicted, active_share, new_share

    @staticmethod
    def _remember(m: dict, pairs: list, zero_level: bool = False):
        """Store new contexts; for a zero-level one, return whether it was new."""
        added = 0
        for lf, rf in pairs:
            ids = []
            for side, fs in ((0, lf), (1, rf)):
                sid = m["semi_ids"][side].setdefault(fs, len(m["semis"][side]))
                if sid == len(m["semis"][side]):
                    semi = [[], len(fs), 0, {}, sid] if side == 0 else [[], len(fs), 0, sid]
                    m["semis"][side].append(semi)
                    for f in fs:
                        m["facts"][side].setdefault(f, []).append(semi)
                ids.append(sid)
            contexts = m["contexts"]
            cid = m["semis"][0][ids[0]][3].setdefault(ids[1], len(contexts))
            if cid == len(contexts):
                added += 1
                contexts.append([0, 0, 0, rf, int(zero_level), hash(lf), hash(rf)])
                if zero_level:
                    m["new_cid"] = cid
                    return True
            elif zero_level:
                contexts[cid][4] = 1
                return False
        return added

    @staticmethod
    def _cross(m: dict, side: int, facts: tuple) -> list:
        """Mark which facts of each semi-context on ``side`` the input has; return those hit."""
        for semi in m["crossed"][side]:
            semi[0] = []
            semi[2] = 0
        hit = {}
        for f in facts:
            for semi in m["facts"][side].get(f, ()):
                semi[0].append(f)
                hit[semi[-1]] = semi
        crossed = [hit[i] for i in sorted(hit)]  # creation order, as NAB's full scan
        for semi in crossed:
            semi[2] = len(semi[0])
        m["crossed"][side] = crossed
        return crossed

    def _cross_left(self, m: dict, facts: tuple, potential: list) -> tuple[int, set]:
        n_new = self._remember(m, potential) if potential else 0
        best, chosen = 0.0, []
        for semi in self._cross(m, 0, facts):
            if semi[1] == semi[2]:
                for cid in semi[3].values():
                    c = m["contexts"][cid]
                    w = c[1] / c[0] if c[0] > 0 else 0.0
                    if w > best:
                        best, chosen = w, [c]
                    elif w == best:
                        chosen.append(c)
        predicted = set()
        for c in chosen:
            predicted.update(c[3])
        return n_new, predicted

    def _cross_right(self, m: dict, facts: tuple, new_flag: bool) -> tuple[list, int, list]:
        self._cross(m, 1, facts)
        rights = m["semis"][1]
        active, potential, n_selected = [], [], 0
        for left in m["crossed"][0]:
            full = left[1] == left[2]
            for rid, cid in left[3].items():
                if m["new_cid"] == cid:
                    continue
                c = m["contexts"][cid]
                right = rights[rid]
                if full:
                    n_selected += 1
                    c[0] += right[1]
                    if right[2] > 0:
                        c[1] += right[2]
                        if right[1] == right[2]:
                            c[2] += 1
                            active.append((cid, c[2], c[5], c[6]))
                            continue
                    else:
                        continue
                elif right[2] == 0:
                    continue
                if c[4] and new_flag and left[2] <= self.max_left_semi_contexts:
                    potential.append((tuple(left[0]), tuple(right[0])))
        m["new_cid"] = False
        return active, n_selected, potential

    # -- snapshot ----------------------------------------------------------------------------
    def to_state(self) -> tuple:
        """``(pickled context memory,)``: the memory is a graph with shared nodes."""
        return (pickle.dumps(self._m, protocol=pickle.HIGHEST_PROTOCOL),)

    @classmethod
    def from_state(cls, params: dict, state: tuple) -> CadOse:
        det = cls(**params)
        det._m = pickle.loads(state[0])
        return det

    def params(self) -> dict:
        return {
            "threshold": self.threshold,
            "base_threshold": self.base_threshold,
            "rest_period": self.rest_period,
            "max_left_semi_contexts": self.max_left_semi_contexts,
            "max_active_neurons": self.max_active_neurons,
            "value_bits": self.value_bits,
        }
