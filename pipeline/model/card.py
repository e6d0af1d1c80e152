"""The model card: one self-contained HTML page per registered version, what an analyst reads
in the MLflow UI: what was trained on which data, the gate's verdict, the held-out metrics, the
plots (ROC, precision-recall, calibration, cumulative lift, feature importances; rendered by
matplotlib, embedded as base64 PNG images) and the training's settings, every record as a
table (never a Python or JSON dump) and no path of the machine that trained it."""

from __future__ import annotations

import base64
import html
import io
import re
from collections.abc import Mapping
from typing import Any

import numpy as np


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def plots(y: np.ndarray, p: np.ndarray, importances: Any, calibration: dict[str, list[float]]) -> dict[str, str]:
    """Base64 PNGs by title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve, roc_curve

    out: dict[str, str] = {}
    fig, ax = plt.subplots(figsize=(4.5, 4))
    fpr, tpr, _ = roc_curve(y, p)
    ax.plot(fpr, tpr), ax.plot([0, 1], [0, 1], "--", color="grey")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    out["ROC curve"] = _png(fig)

    fig, ax = plt.subplots(figsize=(4.5, 4))
    prec, rec, _ = precision_recall_curve(y, p)
    ax.plot(rec, prec), ax.axhline(np.mean(y), ls="--", color="grey", label="base rate")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall"), ax.legend()
    out["Precision-recall curve"] = _png(fig)

    fig, ax = plt.subplots(figsize=(4.5, 4))
    top = max(calibration["predicted"] + calibration["observed"] + [0.05])
    ax.plot(calibration["predicted"], calibration["observed"], "o-"), ax.plot([0, top], [0, top], "--", color="grey")
    ax.set(xlabel="mean predicted probability", ylabel="observed churn rate", title="Calibration (deciles)")
    out["Calibration curve"] = _png(fig)

    fig, ax = plt.subplots(figsize=(4.5, 4))
    order = np.argsort(-p, kind="stable")
    share = np.arange(1, len(y) + 1) / len(y)
    ax.plot(share, np.cumsum(y[order]) / max(1, y.sum()), label="model"), ax.plot([0, 1], [0, 1], "--", color="grey")
    ax.set(xlabel="share of customers contacted", ylabel="share of churners captured", title="Cumulative gains"), ax.legend()
    out["Lift / cumulative gains"] = _png(fig)

    top_imp = importances.head(15)[::-1]
    fig, ax = plt.subplots(figsize=(5.5, 0.3 * len(top_imp) + 1))
    ax.barh(top_imp.index.astype(str), top_imp.to_numpy())
    ax.set(xlabel="permutation importance (ROC-AUC drop)", title="Feature importances")
    out["Feature importances"] = _png(fig)
    return out


def risk_bands_html(threshold: float, capacity: int | None) -> str:
    """The nightly risk bands' cut-offs (:func:`pipeline.model.score.risk_bands`) in words."""
    most = (f"the {capacity:,} highest per night (campaign_daily_capacity)" if capacity
            else "all of them (campaign_daily_capacity 0: no daily limit)")
    return (f"<p>Risk bands each night: <b>high</b> is the night's campaign list, churn probability &gt;= "
            f"{threshold:.4f}, {most}; <b>medium</b> is at or above the threshold but over the daily capacity; "
            "<b>low</b> is below the threshold.</p>")


def validation_html(validation: Any) -> str:
    """How the held-out metrics were obtained (params' ``validation``): nothing for the usual
    out-of-time validation (a model without the record is one), the caveat for a stratified one."""
    if not isinstance(validation, dict) or validation.get("mode") != "stratified":
        return ""
    e = html.escape
    share = float(validation.get("holdout_share") or 0)
    return (f"<p><b>Validation: {e(str(validation.get('description')))}.</b> {e(str(validation.get('reason')))}: "
            f"the held-out metrics are on a stratified {share:.0%} of "
            "the customers of the same snapshot(s), the CV folds and the calibration split stratified folds of the "
            "others. They do not show how the model holds up on a later month; watch the matured-label "
            "performance of the first nights.</p>")


#: an absolute path of the machine that trained (POSIX or Windows, or a file: URI) inside a text
_PATH = re.compile(r"(?:file://)?(?:/|[A-Za-z]:[\\/])[^\s,;'\"]*[/\\]([^/\\\s,;'\"]+)")

#: what the card says of each held-out metric (others by their key)
METRIC_LABELS = {
    "roc_auc": "ROC-AUC", "pr_auc": "PR-AUC (average precision)", "brier": "Brier score", "ece":
    "expected calibration error", "base_rate": "churn rate", "n": "rows", "n_positive": "churners",
    "top_decile_lift": "lift in the top 10 %", "top_decile_capture_rate": "churners captured by the top 10 %",
    "threshold": "decision threshold", "precision": "precision at the threshold", "recall": "recall at the threshold",
    "f1": "F1 at the threshold", "expected_value": "expected campaign value at the threshold",
    "train_rows": "training rows",
}

#: parameters the card shows elsewhere or never: the feature lists (below the table), the
#: training set's location (a path of the machine that trained)
_NOT_IN_TABLE = ("numeric_features", "categorical_features", "training_set")


def public_text(text: str) -> str:
    """``text`` with every absolute path (a location on the machine that trained) reduced to its
    last part: ``/tmp/x/data/runs/.../training_set.parquet`` -> ``training_set.parquet``."""
    return _PATH.sub(lambda m: m.group(1), text)


def number(value: float | int) -> str:
    """A number as a person reads it: whole numbers with thousands separators, others with four
    significant decimals (large ones without decimals)."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int) or (float(value).is_integer() and abs(value) >= 1):
        return f"{value:,.0f}"
    if value != value:
        return "n/a"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}" if abs(value) < 0.001 else f"{value:.4f}"


def cell(value: Any) -> str:
    """A value as HTML for a table cell: a mapping as a nested table, a list of plain values
    comma-separated (of records: a nested table each), numbers by :func:`number`, text without
    the trainer's paths; None and empty values as a dash."""
    e = html.escape
    if value is None or value == "" or value == [] or value == {}:
        return "&ndash;"
    if isinstance(value, bool | int | float):
        return number(value)
    if isinstance(value, Mapping):
        return table(value)
    if isinstance(value, list | tuple):
        if all(not isinstance(v, Mapping | list | tuple) for v in value):
            return e(", ".join(public_text(str(v)) if not isinstance(v, bool | int | float) else number(v)
                               for v in value))
        return "".join(cell(v) for v in value)
    return e(public_text(str(value)))


def table(record: Mapping[str, Any], labels: Mapping[str, str] | None = None, skip: tuple[str, ...] = ()) -> str:
    """``record`` as a two-column table (key, :func:`cell`), keys by ``labels`` where named."""
    e = html.escape
    def name(key: str) -> str:  # a pipeline step's parameter by its own name: model__C -> C
        return (labels or {}).get(key) or key.removeprefix("model__").replace("__", " ").replace("_", " ")

    rows = "".join(f"<tr><th>{e(name(str(k)))}</th><td>{cell(v)}</td></tr>" for k, v in record.items() if k not in skip)
    return f"<table>{rows}</table>"


def campaign_text(campaign: Any) -> str:
    """The campaign's economics (metrics' ``campaign``) in words."""
    if not isinstance(campaign, Mapping):
        return ""
    capacity = campaign.get("capacity")
    return (f"a saved customer is worth {number(campaign.get('customer_value', 0))}, "
            f"{float(campaign.get('save_rate', 0)):.0%} of the churners contacted are saved, a contact costs "
            f"{number(campaign.get('contact_cost', 0))}, "
            + (f"at most {number(capacity)} contacts" if capacity else "no limit on contacts"))


def gate_html(gate: Any) -> str:
    """The gate's evidence (metrics' ``gate``): per metric both models on the same holdout, the
    difference and the rule, and whether it passed."""
    if not isinstance(gate, Mapping) or not isinstance(gate.get("metrics"), Mapping):
        return ""
    e = html.escape
    def signed(value: Any) -> str:
        return "&ndash;" if value is None else f"{float(value):+.4f}"

    rows = "".join(
        f"<tr><th>{e(METRIC_LABELS.get(k, k))}</th><td>{cell(m.get('candidate'))}</td><td>{cell(m.get('champion'))}</td>"
        f"<td>{signed(m.get('difference'))}</td><td>{e(str(m.get('rule', '')))}</td>"
        f"<td>{'&ndash;' if m.get('passed') is None else cell(bool(m['passed']))}</td></tr>"
        for k, m in gate["metrics"].items() if isinstance(m, Mapping))
    champion = gate.get("champion") or "none"
    return (f"<h2>Gate</h2><p>{e(public_text(str(gate.get('sentence') or gate.get('decision') or '')))}</p>"
            f"<table><tr><th>metric</th><th>this version</th><th>champion ({e(str(champion))})</th><th>difference</th>"
            f"<th>rule</th><th>passed</th></tr>{rows}</table>"
            f"<p>Test: {e(str(gate.get('test', '')))}; {number(gate.get('rows', 0))} holdout rows, "
            f"{number(gate.get('positives', 0))} churners.</p>")


def _summary(version: str, metrics: Mapping[str, Any], params: Mapping[str, Any]) -> str:
    """What was trained, on which snapshots, validated how, in one sentence."""
    window = params.get("training_window") or {}
    held = window.get("holdout") or metrics.get("holdout_snapshots") or []
    if window.get("first_snapshot"):
        data = (f"on the snapshots {window['first_snapshot']} to {window['last_snapshot']} "
                f"({number(metrics.get('train_rows', 0))} rows), held out: {', '.join(map(str, held)) or 'none'}")
    else:
        source = params.get("source_csv")
        rows, held_out = window.get("rows", metrics.get("train_rows", 0)), window.get("held_out_rows", metrics.get("n", 0))
        data = (f"on {public_text(str(source))} " if source else "on ") + f"({number(rows)} rows, {number(held_out)} held out)"
    return f"{version}: {params.get('model')} trained {data}."


def calibration_html(metrics: Mapping[str, Any]) -> str:
    """The calibration check on the holdout: how the probabilities were calibrated, the Brier
    score, the expected calibration error and the reliability curve's bins (mean predicted vs
    observed churn rate per tenth of the holdout by probability)."""
    curve = metrics.get("calibration_curve")
    if not isinstance(curve, Mapping) or "brier" not in metrics:
        return ""
    how = metrics.get("calibration")
    how = how.get("description") if isinstance(how, Mapping) else how
    rows = "".join(f"<tr><td>{i}</td><td>{q:.4f}</td><td>{o:.4f}</td><td>{o - q:+.4f}</td><td>{n:,}</td></tr>"
                   for i, (q, o, n) in enumerate(zip(curve["predicted"], curve["observed"], curve["count"],
                                                     strict=True), 1))
    return (f"<h2>Calibration on the holdout</h2><p>{html.escape(public_text(str(how))) + '. ' if how else ''}"
            f"Brier score <b>{metrics['brier']:.4f}</b> (a constant forecast of the churn rate would score "
            f"{metrics.get('base_rate', 0.0) * (1 - metrics.get('base_rate', 0.0)):.4f}), expected calibration error "
            f"<b>{metrics.get('ece', float('nan')):.4f}</b> (the mean gap between predicted and observed over the "
            "bins below, weighted by their rows).</p><table><tr><th>bin</th><th>mean predicted</th><th>observed</th>"
            f"<th>gap</th><th>rows</th></tr>{rows}</table>")


def model_card_html(version: str, metrics: dict[str, Any], params: dict[str, Any], images: dict[str, str]) -> str:
    """The card of ``version``; ``images``: :func:`plots` (base64 PNG by title)."""
    e = html.escape
    scalars = {k: v for k, v in metrics.items() if isinstance(v, float | int) and not isinstance(v, bool)}
    f1 = metrics["f1_optimal"]
    campaign = campaign_text(metrics.get("campaign"))
    threshold = (
        f"<p>Decision threshold <b>{metrics['threshold']:.4f}</b> maximises the expected campaign value "
        f"(<b>{metrics['expected_value']:,.0f}</b>{'; ' + e(campaign) if campaign else ''}). The F1-optimal threshold "
        f"{f1['threshold']:.4f} would be worth {f1['expected_value']:,.0f} (F1 {f1['f1']:.3f}).</p>"
        + risk_bands_html(metrics["threshold"], params.get("campaign_daily_capacity"))
    )
    imgs = "".join(f"<figure><img alt='{e(t)}' src='data:image/png;base64,{b}'><figcaption>{e(t)}</figcaption></figure>"
                   for t, b in images.items())
    calibration = params.get("calibration")
    if isinstance(metrics.get("calibration"), Mapping):
        calibration = metrics["calibration"].get("description") or calibration
    elif isinstance(calibration, Mapping):
        calibration = calibration.get("description") or calibration.get("method")
    decision = metrics.get("promotion_decision", "")
    shown = ("gate", "calibration_curve", "campaign", "f1_optimal")
    records = {k: v for k, v in metrics.items() if isinstance(v, Mapping) and k not in shown}
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Model card {e(version)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:auto;padding:0 12px}}table{{border-collapse:collapse;margin:4px 0}}
th,td{{padding:2px 8px;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}}th{{font-weight:600;color:#333}}
td table th{{font-weight:normal;color:#555}}figure{{display:inline-block;margin:6px}}</style></head><body>
<h1>Model card: {e(version)}</h1>
<p>{e(_summary(version, metrics, params))}</p>
<p>Churn (the positive label): {e(str((params.get('label') or {}).get('definition', 'a cancellation within horizon_days')))}.</p>
<p>Candidate <b>{e(str(params['model']))}</b>, probabilities calibrated ({e(public_text(str(calibration)))}).
Promotion: {e(public_text(str(decision)))}</p>
{threshold}
{validation_html(params.get('validation'))}
<h2>Held-out metrics</h2>{table(scalars, METRIC_LABELS)}
{calibration_html(metrics)}
{gate_html(metrics.get('gate'))}
<h2>Plots</h2>{imgs}
{''.join(f"<h2>{e(k.replace('_', ' ').capitalize())}</h2>{cell(v)}" for k, v in records.items())}
<h2>Training</h2>{table(params, skip=_NOT_IN_TABLE)}
<p>Numeric features: {e(', '.join(params['numeric_features']) or 'none')}<br>
Categorical features: {e(', '.join(params['categorical_features']) or 'none')}</p>
</body></html>"""
