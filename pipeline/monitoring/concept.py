"""Concept drift as it happens: sequential detectors over the champion's errors on matured labels.

Each night the scores of night ``D - window`` mature (:func:`pipeline.features.labels.matured`).
Their errors are fed to two detectors of the `river <https://riverml.xyz>`_ library, kept per
model version:

* ``ddm`` - DDM (Gama et al., 2004) over the **decision error**: 1 when the campaign decision at
  the model's threshold was wrong (flagged and stayed, or not flagged and churned), else 0;
* ``adwin`` - ADWIN (Bifet and Gavalda, 2007) over the **absolute error** ``|label - probability|``.

The order is fixed: prediction night, then the customer's MD5 hash
(:func:`pipeline.features.partitions.customer_hash`), then its id as text. A customer's label
windows of consecutive nights overlap (a churn on day X is the label of every night in
``(X - window, X]``), so feeding every customer every night would feed each churn ``window``
times and make the stream look far less noisy than it is (the detectors assume independent
errors). Each night therefore feeds the customers of one hash rotation: those whose hash modulo
the label window equals the prediction night's day number modulo the window, so a customer is
fed once per label window and each churn counts once.

The detectors' state (pickled, with the nights it has seen) is stored per model version and
night in the results store (``concept_drift``); a night starts from the latest state stored
before it for its model version, so a rerun of night N starts from night N - 1's state and
replaces N's rows: replaying the nights gives the same states, byte for byte
(``state_sha256``).

A detector that starts for a model version is first **seeded** with that version's own errors on
its training holdout (``holdout_predictions.parquet`` of the version's bundle: the same label
definition and window as the matured labels, at the same threshold; :func:`holdout_errors`), at
most ``concept_drift_seed_rows`` of them, so that it knows what normal was before the first night:
without it, a change from the deployment day on is the only error rate it ever sees, and it learns
that rate as normal. Changes found while seeding are not reported; the seed also uses up the
detectors' warm start, so the first matured night can already be detected. A version without
stored holdout predictions (registered before they were kept) starts empty, as before, and says so
(``seeded`` 0 and ``seed_note``).
"""

from __future__ import annotations

import bisect
import datetime as dt
import hashlib
import logging
import math
import pickle
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from pipeline.artifacts import as_date
from pipeline.config import CONCEPT_DETECTORS as DETECTORS

log = logging.getLogger(__name__)

#: what each detector is fed
ERRORS = {"adwin": "absolute_error", "ddm": "decision_error"}


@dataclass(frozen=True)
class Detection:
    """One change a detector found: where (stream positions as prediction nights) and how large."""

    detector: str
    error: str
    #: prediction nights of the errors before the change (the detector's reference) and after it
    window_start: str
    change_at: str
    window_end: str
    errors_before: int
    errors_after: int
    rate_before: float
    rate_after: float

    @property
    def worse(self) -> bool:
        """The errors went up (ADWIN also finds a drop, which is no alarm)."""
        return self.rate_after > self.rate_before


@dataclass
class Tracker:
    """One detector of one model version, with what it has seen (what is pickled)."""

    name: str
    detector: Any
    #: (prediction night, errors fed) of every night fed, oldest first
    nights: list[tuple[str, int]] = field(default_factory=list)
    #: errors fed in total
    seen: int = 0
    #: DDM: where its current run started, the errors' sum since then, and its best point (n, sum)
    since: int = 0
    run_sum: float = 0.0
    best: tuple[int, float] = (0, 0.0)
    detections: int = 0
    #: the holdout errors it was seeded with before its first night (0: none), their mean, and why none
    seeded: int = 0
    seed_error_rate: float = math.nan
    seed_note: str | None = None

    def night_at(self, position: int) -> str:
        """The prediction night of the error fed at stream ``position`` (0-based)."""
        starts, total = [], 0
        for _, n in self.nights:
            starts.append(total)
            total += n
        return self.nights[max(bisect.bisect_right(starts, position) - 1, 0)][0]

    def _detection(self, start: int, cut: int, end: int, before: float, after: float) -> Detection:
        return Detection(self.name, ERRORS[self.name], self.night_at(start), self.night_at(cut),
                         self.night_at(end - 1), cut - start, end - cut, before, after)

    def feed(self, values: np.ndarray, scored_on: str) -> list[Detection]:
        """Feed one night's errors (in order); the changes found."""
        self.nights.append((scored_on, len(values)))
        return self._feed_adwin(values) if self.name == "adwin" else self._feed_ddm(values)

    def seed(self, values: np.ndarray, nights: np.ndarray) -> None:
        """Feed the model's holdout errors (in order; ``nights``: each error's snapshot date) before its
        first night: what it finds is not reported, and the detections count starts after it."""
        for night in dict.fromkeys(nights.tolist()):
            self.feed(values[nights == night], str(night))
        self.detections = 0
        self.seeded = len(values)
        self.seed_error_rate = float(values.mean()) if len(values) else math.nan

    # the loops read river's flags directly (``_drift_detected``, DDM's ``_ps_min``): its
    # properties cost more than the update itself on a 1M-error stream
    def _feed_adwin(self, values: np.ndarray) -> list[Detection]:
        det, found, pos = self.detector, [], self.seen
        update = det.update
        width = int(det.width)
        total = float(det.estimation) * width  # the window's sum, kept beside ADWIN's own
        for x in values.tolist():
            update(x)
            pos += 1
            width += 1
            total += x
            if det._drift_detected:  # the oldest part of the window (width - kept errors) was cut off
                kept, after = int(det.width), float(det.estimation)
                found.append(self._detection(pos - width, pos - kept, pos, (total - kept * after) / (width - kept),
                                             after))
                width, total = kept, kept * after
        self.seen = pos
        self.detections += len(found)
        return found

    def _feed_ddm(self, values: np.ndarray) -> list[Detection]:
        det, found, pos = self.detector, [], self.seen
        update = det.update
        best_ps = det._ps_min  # river's DDM keeps its best point (p_min + s_min) privately
        since, run_sum, best = self.since, self.run_sum, self.best
        for x in values.tolist():
            if det._drift_detected:  # DDM starts a new run with the error after a detection
                since, run_sum, best = pos, 0.0, (0, 0.0)
            update(x)
            pos += 1
            run_sum += x
            if det._ps_min != best_ps:
                best_ps, best = det._ps_min, (pos - since, run_sum)
            if det._drift_detected:
                n_best, sum_best = best
                before = sum_best / n_best if n_best else math.nan
                after = (run_sum - sum_best) / (pos - since - n_best)
                found.append(self._detection(since, since + n_best, pos, before, after))
        self.since, self.run_sum, self.best = since, run_sum, best
        self.seen = pos
        self.detections += len(found)
        return found

    @property
    def error_rate(self) -> float:
        """The detector's current estimate: ADWIN's window mean, DDM's mean since its last reset."""
        if self.name == "adwin":
            return float(self.detector.estimation) if self.detector.width else math.nan
        n = self.seen - self.since
        return self.run_sum / n if n else math.nan

    @property
    def in_window(self) -> int:
        """Errors in the detector's current window (ADWIN) or run (DDM)."""
        return int(self.detector.width) if self.name == "adwin" else self.seen - self.since


def new_tracker(name: str, *, adwin_delta: float, ddm_threshold: float, warm_start: int) -> Tracker:
    """A fresh detector (``warm_start``: errors seen before it may detect anything)."""
    from river import drift

    if name == "adwin":
        return Tracker(name, drift.ADWIN(delta=adwin_delta, grace_period=warm_start))
    if name == "ddm":
        return Tracker(name, drift.binary.DDM(warm_start=warm_start, drift_threshold=ddm_threshold,
                                              warning_threshold=min(2.0, ddm_threshold)))
    raise ValueError(f"unknown concept-drift detector {name!r}; expected one of {DETECTORS}")


def errors_in_order(labelled: pd.DataFrame, threshold: float, window_days: int) -> pd.DataFrame:
    """The night's matured predictions to feed, in the fixed order, with both errors.

    ``labelled``: one night's scores with their label (``customer_id``, ``churn_probability``,
    ``label``; ``attrs["scored_on"]``). Kept: the customers of the night's hash rotation (hash
    modulo ``window_days`` equal to the prediction night's day number modulo it); ordered by
    the hash, then the id as text."""
    from pipeline.features.partitions import customer_hash

    scored_on = as_date(labelled.attrs["scored_on"])
    ids = labelled["customer_id"].to_numpy()
    hashes = customer_hash(labelled["customer_id"])
    keep = np.flatnonzero((hashes % window_days) == (scored_on.toordinal() % window_days))
    # by hash, then (the rare equal hashes) by id: a sort of the few ties only, not of every id's text
    keep = keep[np.argsort(hashes[keep], kind="stable")]
    tied = hashes[keep]
    same = np.flatnonzero(tied[1:] == tied[:-1])  # i where rows i and i + 1 share a hash: runs of ties
    for start in same[np.r_[True, np.diff(same) > 1]] if len(same) else []:
        end = start + 1
        while end + 1 < len(tied) and tied[end + 1] == tied[start]:
            end += 1
        rows = np.arange(start, end + 1)
        keep[rows] = keep[rows][np.argsort([str(v) for v in ids[keep[rows]]], kind="stable")]
    frame = pd.DataFrame({"hash": hashes[keep], "id": ids[keep],
                          "p": labelled["churn_probability"].to_numpy(dtype="float64")[keep],
                          "y": labelled["label"].to_numpy(dtype="float64")[keep]})
    frame["absolute_error"] = (frame["y"] - frame["p"]).abs()
    frame["decision_error"] = ((frame["p"] >= threshold) != (frame["y"] == 1)).astype("float64")
    frame.attrs["scored_on"] = scored_on
    return frame


def holdout_errors(holdout: pd.DataFrame, threshold: float, rows: int) -> pd.DataFrame:
    """The seed: the model's errors on its holdout (``label``, ``churn_probability``, and when
    stored ``customer_id`` and ``snapshot_date``), both errors as :func:`errors_in_order` computes
    them, at most ``rows`` of them. With ids: the ``rows`` rows of the lowest customer hashes (then
    id as text, then snapshot), fed by snapshot, then hash, then id; without: the stored order. A
    column ``night`` holds each error's snapshot date (``attrs["snapshot"]`` when not stored)."""
    from pipeline.features.partitions import customer_hash

    frame = pd.DataFrame({"p": holdout["churn_probability"].to_numpy(dtype="float64"),
                          "y": holdout["label"].to_numpy(dtype="float64")})
    frame["night"] = (pd.to_datetime(holdout["snapshot_date"]).dt.date.astype(str).to_numpy()
                      if "snapshot_date" in holdout else str(holdout.attrs.get("snapshot", "")))
    if "customer_id" in holdout:
        frame["hash"] = customer_hash(holdout["customer_id"])
        frame["id"] = holdout["customer_id"].astype(str).to_numpy()
        frame = frame.sort_values(["hash", "id", "night"], kind="stable").head(rows)
        frame = frame.sort_values(["night", "hash", "id"], kind="stable").drop(columns=["hash", "id"])
    frame = frame.head(rows).reset_index(drop=True)
    frame["absolute_error"] = (frame["y"] - frame["p"]).abs()
    frame["decision_error"] = ((frame["p"] >= threshold) != (frame["y"] == 1)).astype("float64")
    return frame


def start_tracker(name: str, threshold: float, holdout: pd.DataFrame | None, seed_rows: int, *, adwin_delta: float,
                  ddm_threshold: float, warm_start: int) -> Tracker:
    """A detector for a model version's first night, seeded with its holdout errors
    (:func:`holdout_errors`; ``holdout`` None: the version has none stored, and it starts empty)."""
    tracker = new_tracker(name, adwin_delta=adwin_delta, ddm_threshold=ddm_threshold, warm_start=warm_start)
    if seed_rows <= 0:
        tracker.seed_note = "not seeded: concept_drift_seed_rows is 0"
    elif holdout is None or not len(holdout):
        tracker.seed_note = "not seeded: the model version has no holdout predictions stored (registered before " \
                            "they were kept); the detector learns normal from its first nights"
    else:
        seed = holdout_errors(holdout, threshold, seed_rows)
        tracker.seed(seed[ERRORS[name]].to_numpy(), seed["night"].to_numpy())
    return tracker


@dataclass(frozen=True)
class ConceptDrift:
    """One night of the detectors: a row per detector (``concept_drift``) and what they found."""

    run_date: str
    model_version: str
    scored_on: str
    rows: list[dict[str, Any]]
    detections: list[Detection]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (no state bytes)."""
        return {"scored_on": self.scored_on, "model_version": self.model_version,
                "rows": [{k: v for k, v in r.items() if k != "state"} for r in self.rows],
                "detections": [asdict(d) for d in self.detections]}

    def frame(self) -> pd.DataFrame:
        """The ``concept_drift`` rows of the night."""
        return pd.DataFrame(self.rows)


def run_night(day: dt.date | str, model_version: str, labelled: pd.DataFrame, threshold: float, window_days: int,
              previous: dict[str, bytes], *, detectors: list[str], adwin_delta: float, ddm_threshold: float,
              warm_start: int, holdout: pd.DataFrame | None = None, seed_rows: int = 0) -> ConceptDrift:
    """Feed one night's matured errors to each detector, starting from its ``previous`` state
    (pickled; a detector without one starts afresh, seeded with at most ``seed_rows`` of the
    model's ``holdout`` errors: :func:`start_tracker`); pure apart from unpickling."""
    stream = errors_in_order(labelled, threshold, window_days)
    scored_on = stream.attrs["scored_on"].isoformat()
    rows: list[dict[str, Any]] = []
    found: list[Detection] = []
    for name in detectors:
        state = previous.get(name)
        tracker = pickle.loads(state) if state is not None else start_tracker(
            name, threshold, holdout, seed_rows, adwin_delta=adwin_delta, ddm_threshold=ddm_threshold,
            warm_start=warm_start)
        if state is None and tracker.seed_note:
            log.warning("concept drift %s: %s %s", model_version, name, tracker.seed_note)
        tonight = tracker.feed(stream[ERRORS[name]].to_numpy(), scored_on)
        found += tonight
        blob = pickle.dumps(tracker, protocol=4)
        last = tonight[-1] if tonight else None
        rows.append({
            "run_date": as_date(day).isoformat(), "model_version": model_version, "detector": name,
            "error": ERRORS[name], "scored_on": scored_on, "fed": len(stream), "seen": tracker.seen,
            "in_window": tracker.in_window, "error_rate": tracker.error_rate,
            "night_error_rate": float(stream[ERRORS[name]].mean()) if len(stream) else math.nan,
            "detections": tracker.detections, "detected": bool(tonight),
            "rate_before": last.rate_before if last else math.nan, "rate_after": last.rate_after if last else math.nan,
            "window_start": last.window_start if last else None, "change_at": last.change_at if last else None,
            "window_end": last.window_end if last else None, "seeded": tracker.seeded,
            "seed_error_rate": tracker.seed_error_rate, "seed_note": tracker.seed_note,
            "state": blob, "state_sha256": hashlib.sha256(blob).hexdigest()})
    return ConceptDrift(as_date(day).isoformat(), model_version, scored_on, rows, found)
