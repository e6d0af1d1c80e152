"""Data drift between a reference sample (training features) and a current batch.

Two outputs, one verdict:

* :func:`compute_drift` computes the machine-readable summary on **all rows** with the
  same per-column tests Evidently 0.7 picks by default (see :func:`_select_test`), plus
  PSI as a second, model-risk style measure.
* :func:`render_report` renders Evidently's visual ``DataDriftPreset`` report: its
  distributions drawn from a random sample of at most ``sample_rows`` rows per side
  (Evidently's runtime grows with the rows it sees, and the attachment has to stay small
  enough to e-mail), its tests, verdicts and counts being the all-rows summary's
  (:mod:`pipeline.monitoring.evidently_report`): one verdict in the JSON, the banner, the
  Evidently panels and the e-mail, whatever the sample or the columns shown.

Evidently is imported inside functions only (it takes seconds).

Missing values (and infinities in numeric columns) are dropped before the drift tests,
as Evidently does; PSI keeps them as a bucket of their own, so a jump in missingness
shows up there. A column without any value on one side cannot be tested: it is reported
with method ``"no data"`` and counts as drifted when the other side has values.
"""

from __future__ import annotations

import html
import json
import math
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from scipy.spatial import distance

from pipeline.artifacts import nan_to_none, write_text

NUMERIC = "numeric"
CATEGORICAL = "categorical"

#: Evidently uses hypothesis tests up to this many (non-missing) reference rows, distances above
SMALL_SAMPLE_MAX_ROWS = 1000
#: a numeric column with at most this many distinct values is tested as discrete (Evidently)
DISCRETE_MAX_VALUES = 5
P_VALUE_THRESHOLD = 0.05
DISTANCE_THRESHOLD = 0.1
#: floor for bucket shares in PSI, so empty buckets do not make it infinite
PSI_EPSILON = 1e-4
NO_DATA = "no data"

REPORT_FILE = "drift_report.html"
SUMMARY_FILE = "drift_summary.json"
#: the copy for e-mail: Evidently inlines ~3.5 MB of JavaScript (~1.1 MB deflated) whatever it
#: shows; a column's row costs ~1 kB, its detail plots ~65 kB (~7 kB deflated), so the copy keeps
#: every row and the detail plots of the drifted and :data:`EMAIL_REPORT_FEATURES` least stable only
EMAIL_REPORT_FILE = "drift_report_email.html"
EMAIL_REPORT_FEATURES = 10


@dataclass(frozen=True)
class FeatureDrift:
    """Drift verdict for one column (``statistic`` is a p-value or a distance, see ``method``)."""

    column: str
    kind: str
    method: str
    statistic: float
    threshold: float
    drifted: bool
    psi: float


@dataclass(frozen=True)
class DriftSummary:
    """Drift verdicts for all compared columns, computed on all rows of both sides."""

    n_reference: int
    n_current: int
    drift_share: float
    dataset_drift: bool
    features: list[FeatureDrift]

    @property
    def drifted_features(self) -> list[FeatureDrift]:
        """The features whose drift test fired, in column order."""
        return [f for f in self.features if f.drifted]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; NaN statistics become ``None``."""
        data = asdict(self)
        data["features"] = nan_to_none(data["features"])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DriftSummary:
        """Inverse of :meth:`to_dict` (e.g. read back from ``drift_summary.json``)."""
        features = [
            FeatureDrift(**{k: (math.nan if v is None else v) for k, v in f.items()})  # type: ignore[arg-type]
            for f in data["features"]
        ]
        return cls(
            n_reference=int(data["n_reference"]),
            n_current=int(data["n_current"]),
            drift_share=float(data["drift_share"]),
            dataset_drift=bool(data["dataset_drift"]),
            features=features,
        )


@dataclass(frozen=True)
class _StatTest:
    """One of Evidently's default drift tests: its display name, threshold and rule."""

    method: str
    threshold: float
    func: Callable[[pd.Series, pd.Series], float]
    #: ``fires(statistic, threshold)``: distances drift at >= threshold, p-values below it
    #: (Evidently's K-S test: at or below)
    fires: Callable[[float, float], bool]


# --- public API ------------------------------------------------------------------------------


def compute_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    numeric: list[str],
    categorical: list[str],
    *,
    share_threshold: float = 0.5,
) -> DriftSummary:
    """Test every listed column for drift on all rows; dataset drift when share >= threshold."""
    kinds = _column_kinds(numeric, categorical)
    _require_columns(reference, kinds, "reference")
    _require_columns(current, kinds, "current")
    features = [column_drift(reference[c], current[c], kind) for c, kind in kinds.items()]
    share = sum(f.drifted for f in features) / len(features)
    return DriftSummary(
        n_reference=len(reference),
        n_current=len(current),
        drift_share=share,
        dataset_drift=share >= share_threshold,
        features=features,
    )


def column_drift(reference: pd.Series, current: pd.Series, kind: str) -> FeatureDrift:
    """Drift verdict for one column, with the test Evidently would choose for it."""
    column = str(reference.name)
    ref, cur = _clean(reference, kind), _clean(current, kind)
    column_psi = _psi_of_clean(ref, cur, kind)
    ref, cur = ref.dropna(), cur.dropna()
    if ref.empty or cur.empty:
        return FeatureDrift(column, kind, NO_DATA, math.nan, math.nan, ref.empty != cur.empty, column_psi)
    test = _select_test(ref, cur, kind)
    statistic = float(test.func(ref, cur))
    drifted = bool(test.fires(statistic, test.threshold))
    return FeatureDrift(column, kind, test.method, statistic, test.threshold, drifted, column_psi)


def psi(reference: pd.Series, current: pd.Series, kind: str, bins: int = 10) -> float:
    """Population stability index of ``current`` against ``reference``.

    Numeric columns with more than ``bins`` distinct reference values are cut at the
    reference's quantiles (outer buckets open-ended); other columns get one bucket per
    value. Missing values form a bucket of their own. Bucket shares are floored at
    :data:`PSI_EPSILON`. Rules of thumb: < 0.1 stable, 0.1-0.25 moderate, > 0.25 large.
    """
    return _psi_of_clean(_clean(reference, kind), _clean(current, kind), kind, bins)


def _psi_of_clean(ref: pd.Series, cur: pd.Series, kind: str, bins: int = 10) -> float:
    """:func:`psi` of series already passed through :func:`_clean`."""
    if ref.empty or cur.empty:
        return math.nan
    ref_present, cur_present = ref.dropna(), cur.dropna()
    if kind == NUMERIC and _n_distinct(ref_present, bins) > bins:
        ref_counts, cur_counts = _quantile_counts(ref_present, cur_present, bins)
    else:
        ref_counts, cur_counts = _value_counts(ref_present, cur_present)
    ref_share = np.append(ref_counts, ref.isna().sum()) / len(ref)
    cur_share = np.append(cur_counts, cur.isna().sum()) / len(cur)
    ref_share, cur_share = np.maximum(ref_share, PSI_EPSILON), np.maximum(cur_share, PSI_EPSILON)
    return float(np.sum((cur_share - ref_share) * np.log(cur_share / ref_share)))


def render_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    numeric: list[str],
    categorical: list[str],
    out_html: Path,
    *,
    sample_rows: int,
    seed: int = 0,
    title: str = "Churn features: data drift",
    reference_label: str | None = None,
    current_label: str | None = None,
    share_threshold: float = 0.5,
    summary: DriftSummary | None = None,
    note: str | None = None,
    sections: Sequence[tuple[str, str]] = (),
) -> Path:
    """Write Evidently's data-drift HTML report on at most ``sample_rows`` rows per side.

    ``reference_label``/``current_label`` (e.g. the dates compared) appear in the header;
    when ``summary`` (the all-rows verdict) is given, the header states it too, and so does
    ``note``. ``sections`` (``(id, html fragment)`` pairs, e.g. the monitoring trend) are
    placed right below the banner. Columns without any value on a side (after sampling) are
    left out of the Evidently part and named in the header. Returns ``out_html``, written
    atomically, once: nothing edits a report after it is written.
    """
    if sample_rows < 1:
        raise ValueError(f"sample_rows must be >= 1, got {sample_rows}")
    kinds = _column_kinds(numeric, categorical)
    _require_columns(reference, kinds, "reference")
    _require_columns(current, kinds, "current")
    ref = _prepare_sample(reference, kinds, sample_rows, seed)
    cur = _prepare_sample(current, kinds, sample_rows, seed)
    usable = {c: k for c, k in kinds.items() if ref[c].notna().any() and cur[c].notna().any()}
    if not usable:
        raise ValueError(f"no column has values in both samples: {sorted(kinds)}")
    if summary is None:
        summary = compute_drift(reference, current, numeric, categorical, share_threshold=share_threshold)
    from pipeline.monitoring.evidently_report import evidently_html

    shown = (f"This page shows {len(usable)} of the {len(summary.features)} columns (the banner says which)."
             if len(usable) < len(summary.features) else "")
    report_html = evidently_html(ref, cur, usable, summary, share_threshold, note=shown)
    header = _header_html(
        title=title,
        reference_label=reference_label,
        current_label=current_label,
        sizes=((len(reference), len(ref)), (len(current), len(cur))),
        skipped=[c for c in kinds if c not in usable],
        summary=summary,
        note=note,
    )
    page = _insert_header(report_html, _full_title(title, reference_label, current_label), header)
    for section_id, fragment in sections:
        page = with_section(page, section_id, fragment)
    return write_text(page, out_html)


def drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    numeric: list[str],
    categorical: list[str],
    out_dir: Path,
    *,
    sample_rows: int,
    share_threshold: float,
    seed: int = 0,
    title: str = "Churn features: data drift",
    reference_label: str | None = None,
    current_label: str | None = None,
    email_features: int = EMAIL_REPORT_FEATURES,
    summary: DriftSummary | None = None,
    sections: Sequence[tuple[str, str]] = (),
) -> tuple[Path, Path, DriftSummary]:
    """Compute drift on all rows (unless ``summary`` is given) and write ``drift_report.html``
    and ``drift_summary.json``, plus ``drift_report_email.html``: the same page (every column,
    the same verdicts) with the detail plots kept only for the :func:`email_report_columns`
    (see :func:`email_copy`). Both carry ``sections`` (see :func:`render_report`).

    Returns ``(html_path, json_path, summary)``; the files are written atomically.
    """
    if summary is None:
        summary = compute_drift(reference, current, numeric, categorical, share_threshold=share_threshold)
    html_path = render_report(
        reference, current, numeric, categorical, Path(out_dir) / REPORT_FILE, sample_rows=sample_rows, seed=seed,
        title=title, reference_label=reference_label, current_label=current_label, share_threshold=share_threshold,
        summary=summary, sections=sections)
    detailed = email_report_columns(summary, email_features)
    write_text(email_copy(html_path.read_text(encoding="utf-8"), detailed), Path(out_dir) / EMAIL_REPORT_FILE)
    return html_path, write_summary(summary, out_dir), summary


#: Evidently's standalone page: the widgets and the detail plots a row expands to, as two JSON variables
_PAGE_DATA = re.compile(r"var (metric_\w+) = (\{.*?\});\s*var (additional_graphs_\1) = (\{.*?\});\s*</script>", re.S)


def email_copy(page: str, detailed: Sequence[str]) -> str:
    """The report page for e-mail: every column's row (verdict, statistic, small histograms) and
    the all-rows banner as they are, the detail plots (what a row expands to, ~95% of the page's
    data) kept only for the ``detailed`` columns; the banner names them. Evidently's own
    JavaScript (~1.1 MB deflated) stays: the page opens offline."""
    found = _PAGE_DATA.search(page)
    if found is None:
        raise ValueError("not an Evidently report page: its widget data was not found")
    widgets, graphs = json.loads(found.group(2)), json.loads(found.group(4))
    keep = set(detailed)
    dropped: set[str] = set()

    def prune(widget: dict[str, Any]) -> None:
        if widget.get("type") == "big_table":
            for row in (widget.get("params") or {}).get("data", []):
                if row.get("column_name") not in keep and row.get("details"):
                    dropped.update(part["id"] for part in row["details"].get("parts", []))
                    row.pop("details")
            widget["additionalGraphs"] = [g for g in widget.get("additionalGraphs", []) if g.get("id") not in dropped]
        for child in widget.get("widgets", []):
            prune(child)

    for widget in widgets.get("widgets", []):
        prune(widget)
    graphs = {k: v for k, v in graphs.items() if k not in dropped}
    data = (f"var {found.group(1)} = {json.dumps(widgets)};\n    var {found.group(3)} = {json.dumps(graphs)};\n"
            "    </script>")
    line = (f"Detail plots (click a row) for: {', '.join(detailed)}; every column's detail plots are in the complete "
            f"report, kept with the night's outputs as {REPORT_FILE}." if detailed else
            f"Detail plots left out to keep the e-mail small; the complete report, kept with the night's outputs as "
            f"{REPORT_FILE}, has them.")
    return _with_banner_line(page[:found.start()] + data + page[found.end():], line)


def _with_banner_line(page: str, line: str) -> str:
    return page.replace("</ul></header>", f"<li>{html.escape(line)}</li></ul></header>", 1)


def write_summary(summary: DriftSummary, out_dir: Path) -> Path:
    """``drift_summary.json`` (the all-rows verdicts) in ``out_dir``, written atomically."""
    return write_text(json.dumps(summary.to_dict(), indent=2), Path(out_dir) / SUMMARY_FILE)


def email_report_columns(summary: DriftSummary, limit: int) -> list[str]:
    """The columns whose detail plots the e-mailed report keeps: every drifted one (by PSI,
    largest first, NaN last), then the others by PSI up to ``limit`` in all: the cap leaves out
    stable columns only."""
    drifted = sorted((f for f in summary.features if f.drifted), key=by_psi_descending)
    others = sorted((f for f in summary.features if not f.drifted), key=by_psi_descending)
    return [f.column for f in drifted] + [f.column for f in others[:max(0, limit - len(drifted))]]


def by_psi_descending(feature: FeatureDrift) -> float:
    """Sort key: the largest PSI first, NaN last."""
    return math.inf if math.isnan(feature.psi) else -feature.psi


# --- column checks -------------------------------------------------------------------------


def _column_kinds(numeric: list[str], categorical: list[str]) -> dict[str, str]:
    """Map each column to its kind; a column may be listed once only."""
    listed = [*numeric, *categorical]
    if not listed:
        raise ValueError("no columns to compare: numeric and categorical are both empty")
    duplicated = sorted({c for c in listed if listed.count(c) > 1})
    if duplicated:
        raise ValueError(f"columns listed more than once (or as both kinds): {duplicated}")
    return {**{c: NUMERIC for c in numeric}, **{c: CATEGORICAL for c in categorical}}


def _require_columns(frame: pd.DataFrame, kinds: dict[str, str], side: str) -> None:
    """Raise naming the columns ``frame`` lacks, or numeric columns holding non-numbers."""
    missing = [c for c in kinds if c not in frame.columns]
    if missing:
        raise ValueError(f"{side} data lacks column(s) {missing}")
    not_numeric = [c for c, k in kinds.items() if k == NUMERIC and not pd.api.types.is_numeric_dtype(frame[c])]
    if not_numeric:
        raise TypeError(f"{side} data: numeric column(s) {not_numeric} do not hold numbers")


def _clean(values: pd.Series, kind: str) -> pd.Series:
    """Numeric columns as float64 with infinities as missing; categorical ones as ``category``.

    The ``category`` dtype makes the repeated value counts cheap on large columns.
    """
    if kind != NUMERIC:
        return values.astype("category")
    floats = values.astype("float64")
    return floats.where(np.isfinite(floats))


# --- Evidently's default tests ---------------------------------------------------------------


def _select_test(reference: pd.Series, current: pd.Series, kind: str) -> _StatTest:
    """The test Evidently 0.7 picks (``legacy/calculations/stattests/registry.py``).

    Up to 1000 reference rows: K-S for numeric columns, chi-square (more than two values)
    or a two-proportion z-test (two values) for categorical and discrete numeric ones.
    Above 1000: normed Wasserstein distance for numeric, Jensen-Shannon distance for
    categorical and discrete numeric columns. Inputs hold no missing values.
    """
    small = len(reference) <= SMALL_SAMPLE_MAX_ROWS
    if kind == CATEGORICAL and not small:
        return _StatTest("Jensen-Shannon distance", DISTANCE_THRESHOLD, _jensen_shannon, operator.ge)
    n_values = _n_distinct(reference, DISCRETE_MAX_VALUES)
    if n_values <= DISCRETE_MAX_VALUES:
        n_values = pd.concat([reference, current]).nunique()
    discrete = kind == CATEGORICAL or n_values <= DISCRETE_MAX_VALUES
    if not discrete:
        if small:
            return _StatTest("K-S p_value", P_VALUE_THRESHOLD, _ks_p_value, operator.le)
        return _StatTest("Wasserstein distance (normed)", DISTANCE_THRESHOLD, _wasserstein_normed, operator.ge)
    if not small:
        return _StatTest("Jensen-Shannon distance", DISTANCE_THRESHOLD, _jensen_shannon, operator.ge)
    if n_values > 2:
        return _StatTest("chi-square p_value", P_VALUE_THRESHOLD, _chi_square_p_value, operator.lt)
    return _StatTest("Z-test p_value", P_VALUE_THRESHOLD, _z_test_p_value, operator.lt)


def _n_distinct(values: pd.Series, cap: int) -> int:
    """Distinct values: exact up to ``cap``, a lower bound above it.

    Counts the first rows before hashing them all, which saves that full pass for the
    continuous columns.
    """
    head = values.iloc[:10_000].nunique()
    return head if head > cap else values.nunique()


def _ks_p_value(reference: pd.Series, current: pd.Series) -> float:
    return float(stats.ks_2samp(reference.to_numpy(), current.to_numpy()).pvalue)


def _wasserstein_normed(reference: pd.Series, current: pd.Series) -> float:
    """Wasserstein-1 distance divided by the reference's std (at least 0.001), as Evidently.

    The integral of |F_ref - F_cur| between consecutive pooled values, as in
    ``scipy.stats.wasserstein_distance``, but the two CDFs come from one stable merge
    of the sorted sides instead of binary searches (about 4x faster at 1M rows). Within
    runs of tied values the running difference is off, but those steps have zero width.
    """
    ref, cur = np.sort(reference.to_numpy()), np.sort(current.to_numpy())
    pooled = np.concatenate((ref, cur))
    order = np.argsort(pooled, kind="stable")
    cdf_gap = np.cumsum(np.where(order < ref.size, 1 / ref.size, -1 / cur.size))[:-1]
    w1 = float(np.dot(np.abs(cdf_gap), np.diff(pooled[order])))
    return w1 / max(float(np.std(ref)), 0.001)


def _jensen_shannon(reference: pd.Series, current: pd.Series) -> float:
    """Jensen-Shannon distance (natural log) between the value shares of both sides."""
    ref_counts, cur_counts = _value_counts(reference, current)
    return float(distance.jensenshannon(ref_counts / len(reference), cur_counts / len(current)))


def _chi_square_p_value(reference: pd.Series, current: pd.Series) -> float:
    """Chi-square goodness of fit of current counts to reference shares."""
    ref_counts, cur_counts = _value_counts(reference, current)
    expected = ref_counts * (len(current) / len(reference))
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(stats.chisquare(cur_counts, expected).pvalue)


def _z_test_p_value(reference: pd.Series, current: pd.Series) -> float:
    """Two-sided z-test for the share of one of (at most) two values."""
    ref_counts, cur_counts = _value_counts(reference, current)
    if len(ref_counts) < 2:
        return 1.0
    p_ref, p_cur = ref_counts[0] / len(reference), cur_counts[0] / len(current)
    pooled = (ref_counts[0] + cur_counts[0]) / (len(reference) + len(current))
    z = (p_ref - p_cur) / math.sqrt(pooled * (1 - pooled) * (1 / len(reference) + 1 / len(current)))
    return float(2 * stats.norm.sf(abs(z)))


# --- bucketing -------------------------------------------------------------------------------


def _value_counts(reference: pd.Series, current: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Counts per distinct non-missing value, aligned over the values seen on either side."""
    ref_counts = reference.value_counts(dropna=True)
    cur_counts = current.value_counts(dropna=True)
    keys = ref_counts.index.union(cur_counts.index, sort=False)
    ref_aligned = ref_counts.reindex(keys, fill_value=0).to_numpy(dtype="float64")
    cur_aligned = cur_counts.reindex(keys, fill_value=0).to_numpy(dtype="float64")
    seen = (ref_aligned + cur_aligned) > 0  # unused categories of a categorical dtype
    return ref_aligned[seen], cur_aligned[seen]


def _quantile_counts(reference: pd.Series, current: pd.Series, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Counts per bucket cut at the reference's inner quantiles (outer buckets open-ended)."""
    cuts = np.unique(np.quantile(reference.to_numpy(), np.linspace(0, 1, bins + 1)[1:-1]))
    n_buckets = len(cuts) + 1
    ref_counts = np.bincount(np.searchsorted(cuts, reference.to_numpy(), side="left"), minlength=n_buckets)
    cur_counts = np.bincount(np.searchsorted(cuts, current.to_numpy(), side="left"), minlength=n_buckets)
    return ref_counts.astype("float64"), cur_counts.astype("float64")


# --- HTML report -----------------------------------------------------------------------------


def _prepare_sample(frame: pd.DataFrame, kinds: dict[str, str], sample_rows: int, seed: int) -> pd.DataFrame:
    """A random sample of at most ``sample_rows`` rows, numeric columns cleaned to float64."""
    sample = frame.sample(n=sample_rows, random_state=seed) if len(frame) > sample_rows else frame
    columns = {c: _clean(sample[c], NUMERIC) if k == NUMERIC else sample[c] for c, k in kinds.items()}
    return pd.DataFrame(columns).reset_index(drop=True)


def _full_title(title: str, reference_label: str | None, current_label: str | None) -> str:
    if reference_label is None and current_label is None:
        return title
    return f"{title}: {current_label or 'current'} vs {reference_label or 'reference'}"


def _header_html(
    *,
    title: str,
    reference_label: str | None,
    current_label: str | None,
    sizes: tuple[tuple[int, int], tuple[int, int]],
    skipped: list[str],
    summary: DriftSummary | None,
    note: str | None = None,
) -> str:
    """The banner put above Evidently's report: what is compared, sampling, full verdict."""
    (n_ref, s_ref), (n_cur, s_cur) = sizes
    lines = [
        f"Current: {current_label or 'current data'} ({n_cur:,} rows, {s_cur:,} shown)",
        f"Reference: {reference_label or 'reference data'} ({n_ref:,} rows, {s_ref:,} shown)",
    ]
    if summary is not None:
        drifted = ", ".join(f.column for f in summary.drifted_features) or "none"
        lines.append(
            f"All-rows verdict (drift_summary.json): {len(summary.drifted_features)} of "
            f"{len(summary.features)} columns drifted (share {summary.drift_share:.2f}), "
            f"dataset drift: {'yes' if summary.dataset_drift else 'no'}; drifted: {drifted}"
        )
    if skipped:
        lines.append(f"Not shown (no values on a side): {', '.join(skipped)}")
    if note:
        lines.append(note)
    items = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
    heading = html.escape(_full_title(title, reference_label, current_label))
    return (
        '<header style="font-family:sans-serif;padding:12px 24px;border-bottom:1px solid #ddd">'
        f"<h1 style=\"font-size:22px;margin:0 0 8px\">{heading}</h1><ul style=\"margin:0\">{items}</ul></header>"
    )


def _insert_header(report_html: str, title: str, header: str) -> str:
    """Add a ``<title>`` and the banner to Evidently's standalone HTML page."""
    with_title = report_html.replace("</head>", f"<title>{html.escape(title)}</title></head>", 1)
    return with_title.replace("<body>", f"<body>{header}", 1)


def _section_markers(section_id: str) -> tuple[str, str]:
    if not re.fullmatch(r"[a-z][a-z0-9-]*", section_id):
        raise ValueError(f"section id must be lowercase letters, digits and '-': {section_id!r}")
    return f"<!-- churnflow:{section_id} -->", f"<!-- /churnflow:{section_id} -->"


def with_section(text: str, section_id: str, fragment: str) -> str:
    """The report page ``text`` with ``fragment`` right below its banner, replacing an earlier
    section of the same id (so the same sections always give the same page)."""
    start, end = _section_markers(section_id)
    style = "font-family:sans-serif;padding:12px 24px;border-bottom:1px solid #ddd"
    block = f"{start}<section style=\"{style}\">{fragment}</section>{end}"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + block + rest.split(end, 1)[1]
    elif "</header>" in text:
        text = text.replace("</header>", "</header>" + block, 1)
    else:
        text = text.replace("<body>", "<body>" + block, 1)
    return text


