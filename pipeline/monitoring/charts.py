"""The trend chart of recent nights (drift share, high-risk share, matured ROC-AUC) as PNG,
and as an HTML ``<img>`` to embed in the report and the e-mail."""

from __future__ import annotations

import base64
import datetime as dt
import io

import pandas as pd

from pipeline.artifacts import as_date


def trend_title(trend: pd.DataFrame, day: dt.date | str, nights: int, first_night: dt.date | None = None) -> str:
    """What the trend shows: "1 night so far (D)" / "N nights so far, up to D" while the nights
    began inside the window (``first_night``: the first night ever, default the first of
    ``trend``: :func:`pipeline.monitoring.store.trend_frame`), then "The N nights up to D"."""
    day = as_date(day)
    shown = len(trend)
    if shown and _so_far(trend, day, nights, first_night):
        return f"1 night so far ({day})" if shown == 1 else f"{shown} nights so far, up to {day}"
    return f"The {nights} nights up to {day}"


def _so_far(trend: pd.DataFrame, day: dt.date, nights: int, first_night: dt.date | None) -> bool:
    """Whether the nights began inside the window of ``nights`` nights up to ``day``."""
    first = as_date(first_night) if first_night is not None else as_date(pd.Timestamp(trend.index.min()).date())
    return first > day - dt.timedelta(days=max(nights, 1) - 1)


def trend_chart_png(trend: pd.DataFrame, day: dt.date | str, nights: int = 14,
                    first_night: dt.date | None = None) -> bytes | None:
    """PNG of drift share, high-risk share and matured ROC-AUC over the recent nights
    (``trend``: :func:`pipeline.monitoring.store.trend_frame` of ``day``); None when it is empty.
    The time axis is always the ``nights`` nights up to ``day``, one tick per day or week, so
    one night reads as one point at its date (matplotlib alone spanned years around it); the
    title says how many nights there are so far (:func:`trend_title`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if trend.empty:
        return None
    fig, ax = plt.subplots(figsize=(7, 3), dpi=90)
    for column, marker, label in (("drift_share", "o", "drift share (features)"),
                                  ("high_risk_share", "s", "at-risk share"),
                                  ("roc_auc", "^", "ROC-AUC (matured labels)")):
        values = trend[column].dropna()
        if len(values):
            ax.plot(values.index, values.to_numpy(), marker=marker, label=label)
    import matplotlib.dates as mdates

    last = pd.Timestamp(as_date(day))
    first = last - pd.Timedelta(days=max(nights, 1) - 1)
    ax.set_xlim(first - pd.Timedelta(hours=12), last + pd.Timedelta(hours=12))
    ax.xaxis.set_major_locator(mdates.DayLocator(interval=1 if nights <= 16 else 7))
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d"))
    ax.set_ylim(0, 1.05)
    ax.set_title(trend_title(trend, day, nights, first_night))
    ax.legend(loc="upper left", fontsize=8)
    fig.autofmt_xdate()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def png_img_tag(png: bytes | None, alt: str = "trend chart") -> str:
    if not png:
        return ""
    return f'<img alt="{alt}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}"/>'
