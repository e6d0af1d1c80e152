"""The model card: one self-contained HTML page per registered model, with its plots
(ROC, precision-recall, calibration, cumulative lift, feature importances) rendered by
matplotlib and embedded as base64 PNG images."""

from __future__ import annotations

import base64
import html
import io
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


def model_card_html(version: str, metrics: dict[str, Any], params: dict[str, Any], images: dict[str, str]) -> str:
    """The card of ``version``; ``images``: :func:`plots` (base64 PNG by title)."""
    e = html.escape
    rows = "".join(f"<tr><td>{e(k)}</td><td>{v:.4f}</td></tr>" for k, v in metrics.items() if isinstance(v, float))
    f1 = metrics["f1_optimal"]
    threshold = (
        f"<p>Decision threshold <b>{metrics['threshold']:.4f}</b> maximises the expected campaign value "
        f"(<b>{metrics['expected_value']:,.0f}</b>; {metrics.get('campaign')}). The F1-optimal threshold "
        f"{f1['threshold']:.4f} would be worth {f1['expected_value']:,.0f} (F1 {f1['f1']:.3f}).</p>"
        + risk_bands_html(metrics["threshold"], params.get("campaign_daily_capacity"))
    )
    imgs = "".join(f"<figure><img alt='{e(t)}' src='data:image/png;base64,{b}'><figcaption>{e(t)}</figcaption></figure>"
                   for t, b in images.items())
    details = "".join(f"<tr><td>{e(str(k))}</td><td>{e(str(v))}</td></tr>" for k, v in params.items()
                      if k not in ("numeric_features", "categorical_features"))
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Model card {e(version)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:auto}}td{{padding:2px 8px;border-bottom:1px solid #ddd}}
figure{{display:inline-block;margin:6px}}</style></head><body>
<h1>Model card: {e(version)}</h1>
<p>Churn (the positive label): {e(str((params.get('label') or {}).get('definition', 'a cancellation within horizon_days')))}.</p>
<p>Candidate <b>{e(str(params['model']))}</b>, probabilities calibrated ({e(str(params.get('calibration')))}).
Promotion: {e(str(metrics.get('promotion_decision', '')))}</p>
{threshold}
{validation_html(params.get('validation'))}
<h2>Held-out metrics</h2><table>{rows}<tr><td>rows</td><td>{metrics['n']}</td></tr></table>
<h2>Plots</h2>{imgs}
<h2>Training</h2><table>{details}</table>
<p>Numeric features: {e(', '.join(params['numeric_features']) or 'none')}<br>
Categorical features: {e(', '.join(params['categorical_features']) or 'none')}</p>
</body></html>"""
