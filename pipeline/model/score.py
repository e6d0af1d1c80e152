"""Nightly batch scoring with the champion model."""

from __future__ import annotations

import datetime as dt
import functools
import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pipeline.artifacts import as_date, nan_to_none, write_parquet
from pipeline.config import Settings
from pipeline.model import registry
from pipeline.model.evaluate import CONTACT_NOBODY, Campaign
from pipeline.model.explain import REASON_COLUMNS
from pipeline.results import SCORES, publish_night
from pipeline.storage import Location, read_parquet

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScoreResult:
    path: Location
    rows: int
    model_version: str
    #: :func:`high_risk_share` of the scores at ``threshold``, the model's campaign threshold
    #: (:meth:`pipeline.model.registry.ModelVersion.threshold`)
    high_risk_share: float
    threshold: float

    def to_dict(self) -> dict:
        return nan_to_none({
            "path": str(self.path),
            "rows": self.rows,
            "model_version": self.model_version,
            "high_risk_share": self.high_risk_share,
            "threshold": self.threshold,
        })


def is_high_risk(proba: np.ndarray | pd.Series, threshold: float) -> np.ndarray:
    """The one definition of "high risk": churn probability at or above the campaign threshold."""
    return np.asarray(proba, dtype="float64") >= threshold


def high_risk_share(proba: np.ndarray | pd.Series, threshold: float) -> float:
    """Share of scored customers that are :func:`is_high_risk`; NaN when none were scored."""
    flags = is_high_risk(proba, threshold)
    return float(flags.mean()) if flags.size else math.nan


def campaign_list(scores: pd.DataFrame, threshold: float, capacity: int) -> pd.DataFrame:
    """Tonight's campaign: the customers whose band is "high" (:func:`risk_bands`: at or above
    the threshold, the ``capacity`` highest), highest churn probability first, ranked from 1."""
    chosen = scores[risk_bands(scores, threshold, capacity) == "high"]
    ranked = chosen.sort_values(["churn_probability", "customer_id"], ascending=[False, True])
    columns = ["customer_id", "churn_probability", "risk_band", *[c for c in REASON_COLUMNS if c in ranked.columns]]
    return ranked[columns].assign(risk_band="high", rank=np.arange(1, len(ranked) + 1)).reset_index(drop=True)


#: decimals of a churn probability where a person reads it: the campaign file and the score API's
#: campaign (both round with :func:`round_probability`, so they say the same number)
PROBABILITY_DECIMALS = 3
#: decimals of an expected value (in the currency of ``campaign_customer_value``)
VALUE_DECIMALS = 2
#: the columns of the campaign file before its reasons and its ``campaign_columns`` (:func:`campaign_rows`)
CAMPAIGN_FILE_COLUMNS = ("customer_id", "rank", "churn_probability", "expected_value", "risk_band", "on_list_because")
#: the customer columns read from the customers table (the latest version known on the night)
_CUSTOMER_COLUMNS = ("signup_date", "name", "email", "phone", "region", "gender", "birth_year", "acquisition_channel")
#: the customer's subscription in force on the night (the latest period started before it, as the features)
_SUBSCRIPTION_COLUMNS = ("plan", "monthly_fee", "payment_method")


def round_probability(proba: float | np.ndarray | pd.Series) -> np.ndarray:
    """Churn probabilities as a person reads them (:data:`PROBABILITY_DECIMALS` decimals): the
    campaign file and the score API's campaign round with this one function."""
    return np.round(np.asarray(proba, dtype="float64"), PROBABILITY_DECIMALS)


def campaign_economics(settings: Settings) -> Campaign:
    """The campaign economics of the settings (:class:`~pipeline.model.evaluate.Campaign`: customer
    value, save rate, contact cost, the night's capacity), those training chooses the threshold with."""
    return Campaign(customer_value=settings.campaign_customer_value, save_rate=settings.campaign_save_rate,
                    contact_cost=settings.campaign_contact_cost, capacity=settings.campaign_daily_capacity)


def expected_value(proba: np.ndarray | pd.Series, campaign: Campaign) -> np.ndarray:
    """What contacting each customer is worth in expectation, the per-customer term of
    :func:`~pipeline.model.evaluate.campaign_value`: churn probability x customer value x save
    rate - contact cost (negative: the contact costs more than it is expected to save)."""
    p = np.asarray(proba, dtype="float64")
    return p * campaign.customer_value * campaign.save_rate - campaign.contact_cost


def why_on_list(ranks_: np.ndarray, proba: np.ndarray, threshold: float, capacity: int) -> list[str]:
    """Why each customer of tonight's list is on it (the meaning of its risk band "high"): their
    rank within the list and its capacity, and their churn probability against the model's threshold."""
    size = len(ranks_)
    limit = f"capacity {capacity:,}" if capacity > 0 else "no daily limit"
    return [f"rank {int(r):,} of {size:,} on tonight's list ({limit}); churn probability {p:.3f} at or above the "
            f"model's threshold {threshold:.3f}" for r, p in zip(ranks_, round_probability(proba), strict=True)]


def campaign_rows(listed: pd.DataFrame, threshold: float, campaign: Campaign,
                  details: pd.DataFrame | None = None) -> pd.DataFrame:
    """The campaign file a retention agent acts on, from :func:`campaign_list`'s ``listed``
    (pure): ``customer_id``, ``rank``, ``churn_probability`` (:func:`round_probability`),
    ``expected_value`` (:func:`expected_value` at ``campaign``), ``risk_band`` (high: on tonight's
    list), ``on_list_because`` (:func:`why_on_list`), the reasons, then ``details``' columns
    (the ``campaign_columns`` per customer: :func:`campaign_details`), in rank order."""
    proba = listed["churn_probability"].to_numpy(dtype="float64")
    out = pd.DataFrame({
        "customer_id": listed["customer_id"].to_numpy(),
        "rank": listed["rank"].to_numpy(),
        "churn_probability": round_probability(proba),
        "expected_value": np.round(expected_value(proba, campaign), VALUE_DECIMALS),
        "risk_band": "high",
        "on_list_because": why_on_list(listed["rank"].to_numpy(), proba, threshold, campaign.capacity),
    })
    for column in REASON_COLUMNS:
        if column in listed.columns:
            out[column] = listed[column].to_numpy()
    if details is not None and len(details.columns) > 1:
        extra = details.drop_duplicates("customer_id").set_index("customer_id")
        for column in extra.columns:
            out[column] = out["customer_id"].map(extra[column]).to_numpy()
    return out


def _latest_of(con: Any, settings: Settings, day: dt.date, frame: pd.DataFrame, night: dict[str, Any],
               table: str, columns: list[str], sql: str) -> dict[str, pd.Series]:
    """``columns`` of each listed customer's latest ``table`` row before the night (``sql``)."""
    from pipeline.ingestion import lake

    lake.register_lake_table(con, settings, table, [(None, day + dt.timedelta(days=1))])
    read = con.execute(sql, night).df().set_index("customer_id")
    return {c: frame["customer_id"].map(read[c]) for c in columns}


def campaign_details(settings: Settings, ids: pd.Series | np.ndarray, as_of: str | dt.date) -> tuple[pd.DataFrame,
                                                                                                   dict[str, str]]:
    """The ``campaign_columns`` of the customers ``ids`` on night ``as_of`` from the lake: the
    customers table's columns (the latest version written before the night, as the features
    read it; ``tenure_days`` from its ``signup_date``, as the feature) and the subscription in
    force (the latest period started before the night: ``plan``, ``monthly_fee``,
    ``payment_method``). Returns the frame (``customer_id`` and the columns, in the setting's
    order) and, for each column left out, why: its table is not declared (``source_tables``) or
    no customer of the list has a value (the source lacks it, or it is null)."""
    from pipeline.ingestion import lake

    wanted = settings.campaign_column_names
    day = as_date(as_of)
    frame = pd.DataFrame({"customer_id": np.asarray(ids)})
    left_out: dict[str, str] = {}
    if not wanted or not len(frame):
        return frame, left_out
    tables = set(settings.source_table_names)
    from_customers = [c for c in wanted if c in _CUSTOMER_COLUMNS or c == "tenure_days"]
    from_subscriptions = [c for c in wanted if c in _SUBSCRIPTION_COLUMNS]
    if from_subscriptions and "subscriptions" not in tables:
        left_out.update(dict.fromkeys(from_subscriptions, "subscriptions is not in source_tables"))
        from_subscriptions = []
    got: dict[str, pd.Series] = {}
    with lake.duckdb_connection(settings) as con:
        con.register("campaign_ids", frame)
        night = {"as_of": dt.datetime.combine(day, dt.time())}
        latest = functools.partial(_latest_of, con, settings, day, frame, night)
        if from_customers:
            got.update(latest("customers", from_customers,
                "SELECT c.customer_id, c.signup_date, c.name, c.email, c.phone, c.region, c.gender, c.birth_year, "
                "c.acquisition_channel, date_diff('day', c.signup_date::DATE, $as_of::DATE) AS tenure_days "
                "FROM customers AS c SEMI JOIN campaign_ids AS i ON c.customer_id = i.customer_id "
                "WHERE c.updated_at < $as_of "
                "QUALIFY row_number() OVER (PARTITION BY c.customer_id ORDER BY c.updated_at DESC) = 1"))
        if from_subscriptions:
            got.update(latest("subscriptions", from_subscriptions,
                "SELECT s.customer_id, s.plan, s.monthly_fee, s.payment_method "
                "FROM subscriptions AS s SEMI JOIN campaign_ids AS i ON s.customer_id = i.customer_id "
                "WHERE s.start_date < $as_of QUALIFY row_number() OVER (PARTITION BY s.customer_id "
                "ORDER BY s.start_date DESC, s.subscription_id DESC) = 1"))
    for column in wanted:
        if column in left_out:
            continue
        values = got[column]
        if values.isna().all():
            table = "subscriptions" if column in _SUBSCRIPTION_COLUMNS else "customers"
            source = "signup_date" if column == "tenure_days" else column
            left_out[column] = (f"no customer on tonight's list has a {table}.{source} (absent from the source or "
                                f"null: map it in ingest_{table}.sql)")
            continue
        frame[column] = _readable(column, values)
    return frame, left_out


def _readable(column: str, values: pd.Series) -> pd.Series:
    """A campaign column as an agent reads it: dates as YYYY-MM-DD, whole numbers without a
    decimal point, a fee to the cent."""
    if column == "signup_date":
        return pd.to_datetime(values).dt.strftime("%Y-%m-%d")
    if column in ("tenure_days", "birth_year"):
        return values.astype("Int64")
    if column == "monthly_fee":
        return values.astype("float64").round(2)
    return values.astype(object).where(values.notna(), None)  # a customer without one: empty, never "nan"


def campaign_file(settings: Settings, scores: pd.DataFrame, threshold: float, as_of: str | dt.date) -> pd.DataFrame:
    """Tonight's campaign file (the e-mail's ``campaign_<date>.csv``): :func:`campaign_list` at
    the model's ``threshold`` and ``campaign_daily_capacity``, as :func:`campaign_rows` writes it
    for the agents, with the ``campaign_columns`` (:func:`campaign_details`); a column left out
    is logged with its reason."""
    listed = campaign_list(scores, threshold, settings.campaign_daily_capacity)
    details, left_out = campaign_details(settings, listed["customer_id"], as_of)
    for column, why in left_out.items():
        log.info("campaign %s: campaign_columns %s left out: %s", as_date(as_of), column, why)
    return campaign_rows(listed, threshold, campaign_economics(settings), details)


def ranks(scores: pd.DataFrame) -> np.ndarray:
    """Each customer's place in the night, from 1 (the highest churn probability; ties by customer
    id, as :func:`risk_bands` orders them): the campaign's customers are ranks 1 .. its size, in
    :func:`campaign_list`'s order and with its ``rank``."""
    proba = scores["churn_probability"].to_numpy(dtype="float64")
    order = np.lexsort((scores["customer_id"].astype(str).to_numpy(), -proba))
    out = np.empty(len(order), dtype="int64")
    out[order] = np.arange(1, len(order) + 1)
    return out


def risk_bands(scores: pd.DataFrame, threshold: float, capacity: int) -> np.ndarray:
    """The night's decision per customer: "high", tonight's campaign (at or above the model's
    campaign ``threshold``, the ``capacity`` highest probabilities, ties by customer id; 0: no
    limit); "medium", at or above the threshold but over the capacity; "low", below it."""
    if not 0 <= threshold <= CONTACT_NOBODY:  # above 1: the model's campaign pays for nobody
        raise ValueError(f"the campaign threshold must be in [0, 1], got {threshold}")
    proba = scores["churn_probability"].to_numpy(dtype="float64")
    at_risk = is_high_risk(proba, threshold)
    bands = np.where(at_risk, "medium", "low").astype(object)
    order = np.lexsort((scores["customer_id"].astype(str).to_numpy(), -proba))  # highest first, ties by id
    picked = order[at_risk[order]]
    bands[picked[:capacity] if capacity > 0 else picked] = "high"
    return bands


def score_frame(model: Any, features: pd.DataFrame, feature_columns: list[str], version: str, threshold: float,
                capacity: int, *, bands: bool = True) -> pd.DataFrame:
    """Churn probability and risk band (:func:`risk_bands` at the model's ``threshold`` and the
    daily ``capacity``; ``bands=False``: no ``risk_band`` column, for scores that are never a
    campaign) for every row of ``features`` (pure)."""
    missing = [c for c in feature_columns if c not in features.columns]
    if missing:
        raise ValueError(f"feature table lacks columns the model was trained on: {missing}")
    proba = model.predict_proba(features[feature_columns])[:, 1] if len(features) else np.array([])
    scores = pd.DataFrame(
        {
            "customer_id": features["customer_id"].to_numpy(),
            "as_of": pd.to_datetime(features["as_of"]).to_numpy(),
            "churn_probability": proba.astype("float64"),
        }
    )
    if not bands:
        return scores.assign(model_version=version)
    return scores.assign(risk_band=risk_bands(scores, threshold, capacity), model_version=version)


def reasons_of(model: registry.ModelVersion, fitted: Any, features: pd.DataFrame, at_risk: np.ndarray,
               reference: pd.DataFrame | None = None) -> pd.DataFrame:
    """Each customer's top reasons (:mod:`pipeline.model.explain`) against the model's training
    ``reference`` (read from the version when not given), exact SHAP values for the customers
    ``at_risk``; index aligned with ``features``."""
    import time

    from pipeline.model.explain import explain

    started = time.monotonic()
    reference = pd.read_parquet(model.reference_path) if reference is None else reference
    why = explain(fitted, features.reset_index(drop=True), reference, list(model.params["numeric_features"]),
                  list(model.params["categorical_features"]), exact=at_risk)
    log.info("score: reasons for %d customers in %.1fs (exact SHAP for the %d at risk)", len(why),
             time.monotonic() - started, int(np.sum(at_risk)))
    return why


def publish_scores(settings: Settings, scores_path: Location, as_of: str | dt.date) -> int:
    """Replace the ``churn_scores`` rows of ``as_of`` with the night's scores file and their
    :func:`ranks`, with the night's ``published_nights`` row, in one transaction (a rerun of the
    same date leaves one set of scores; a failure leaves the previous set; a reader sees one or
    the other: :func:`pipeline.results.publish_night`)."""
    scores = read_parquet(scores_path)
    day = as_date(as_of)
    scores["rank"] = ranks(scores)  # in place: a copy of a million rows' frame costs more than the ranks
    rows = publish_night(settings, scores, day)
    log.info("publish %s: %d scores -> table %s of the results store", day, rows, SCORES.name)
    return rows


def score(settings: Settings, model: registry.ModelVersion, fitted: Any, features_path: Location, as_of: str | dt.date,
          out_path: Location, *, features: pd.DataFrame | None = None,
          reference: pd.DataFrame | None = None) -> ScoreResult:
    """Score the feature table of ``as_of`` with ``model`` (the run's pinned version;
    ``fitted``: its loaded estimator) into Parquet (the night's artifact).
    :func:`publish_scores` makes them the ``churn_scores`` rows of that date once the rest of
    the night (report, monitoring) has been written too. ``features`` / ``reference``: the
    table at ``features_path`` and the model's reference when already read."""
    feats = read_parquet(features_path) if features is None else features
    day = as_date(as_of)
    stale = pd.to_datetime(feats["as_of"]).dt.date != day
    if stale.any():
        raise ValueError(f"{features_path}: {int(stale.sum())} rows are not as of {day}")
    threshold = model.threshold(settings.default_threshold)
    scores = score_frame(fitted, feats, model.feature_columns, model.version, threshold,
                         settings.campaign_daily_capacity)
    at_risk = is_high_risk(scores["churn_probability"], threshold)
    scores = pd.concat([scores, reasons_of(model, fitted, feats, at_risk, reference)], axis=1)
    write_parquet(scores, out_path)
    high = high_risk_share(scores["churn_probability"], threshold)
    bands = scores["risk_band"].value_counts()
    log.info("score %s: %d customers with %s, %.3f at or above the threshold %.3f: %d high (tonight's campaign, "
             "campaign_daily_capacity %d), %d medium, %d low -> %s", day, len(scores), model.version, high, threshold,
             bands.get("high", 0), settings.campaign_daily_capacity, bands.get("medium", 0), bands.get("low", 0),
             out_path)
    return ScoreResult(out_path, len(scores), model.version, high, threshold)
