"""The drift report's pages (the rendering apart from the statistics of :mod:`pipeline.monitoring.drift`):
:func:`render_report` puts Evidently's visual report (:mod:`pipeline.monitoring.evidently_report`,
imported only when a page is rendered: Evidently takes seconds) under churnflow's banner with the
all-rows verdict, :func:`drift_report` writes the complete page, the summary and the e-mail's
lighter copy (:func:`email_copy`), and :func:`with_section` places a fragment (the monitoring trend)
below the banner."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.artifacts import write_text
from pipeline.monitoring.drift import (
    EMAIL_REPORT_FEATURES,
    EMAIL_REPORT_FILE,
    REPORT_FILE,
    DriftSummary,
    _column_kinds,
    _prepare_sample,
    _require_columns,
    compute_drift,
    email_report_columns,
    write_summary,
)


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
    from pipeline.monitoring.evidently_report import evidently_html  # Evidently takes seconds to import

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
    line = (f"Detail plots (click a row) for: {', '.join(detailed)}; the complete report has every column's (the "
            "e-mail attaches it when it fits under email_max_bytes)." if detailed else
            "Detail plots left out to keep the e-mail small; the complete report has them (the e-mail attaches it "
            "when it fits under email_max_bytes).")
    return _with_banner_line(page[:found.start()] + data + page[found.end():], line)


def _with_banner_line(page: str, line: str) -> str:
    return page.replace("</ul></header>", f"<li>{html.escape(line)}</li></ul></header>", 1)


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
