"""One typed place for configuration.

Precedence (highest first): environment variables ``CHURNFLOW_<FIELD>`` (upper case),
then the YAML file named by ``CHURNFLOW_CONFIG`` (default ``churnflow.yaml`` in the
working directory, if present), then the defaults below. A relative path in the YAML file
(``data_dir``, ``sql_dir``) is relative to the file's folder; elsewhere to the working directory.

Example: ``CHURNFLOW_DATA_DIR=/srv/churn CHURNFLOW_HORIZON_DAYS=60 python -m pipeline ...``

The settings are declared by stage (:data:`SECTIONS`: storage, ingestion, readiness, labels,
features, model, training, monitoring, email, serving), each field with its own valid range, choices,
title and help (:func:`setting`, :func:`spec`); :class:`Settings` composes the sections, so code
reads one flat typed attribute (``settings.horizon_days``). A YAML file may group its keys under
their section (``monitoring: {psi_warning: 0.2}``) or keep them flat; environment variables are flat.
The Airflow trigger forms are built from the same fields (``churnflow_airflow.params``).
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar, cast, get_type_hints

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
#: the SQL files and expectation suites, package resources (the top-level sql/ and
#: expectations/ of a source checkout, pipeline/sql/ and pipeline/expectations/ in the wheel)
SQL_DIR = Path(str(importlib.resources.files("pipeline.sql")))
EXPECTATIONS_DIR = Path(str(importlib.resources.files("pipeline.expectations")))


#: the sequential concept-drift detectors (concept_drift_detectors): see pipeline.monitoring.concept
CONCEPT_DETECTORS = ("adwin", "ddm")
#: the churn definitions (label_kind): see pipeline.features.labels
LABEL_KINDS = ("cancellation", "inactivity", "non_renewal", "provided")
#: what campaign_columns may name: the customer's columns of the contract's customers table (the latest
#: version known on the night; name, email and phone: contact fields a business maps in), tenure_days, and the
#: current subscription's plan, monthly_fee and payment_method (pipeline.model.score.campaign_details)
CAMPAIGN_COLUMN_NAMES = ("plan", "tenure_days", "monthly_fee", "payment_method", "signup_date", "name", "email",
                         "phone", "region", "gender", "birth_year", "acquisition_channel")


# --- the URL syntax of the settings that may name an object store (pipeline.storage uses them) ---
#: URL schemes of object stores churnflow reads and writes
SCHEMES = ("s3",)
#: the settings that may name an object store
URL_SETTINGS = ("lake_url", "artifacts_url")


def is_url(value: str) -> bool:
    return "://" in str(value)


def parse_url(value: str, setting: str = "") -> tuple[str, str, str]:
    """``(scheme, bucket, key)`` of ``scheme://bucket/key``; a ValueError naming ``setting`` for an
    unknown scheme or a URL without a bucket. No import beyond the standard library (the settings
    check it)."""
    where = f"config {setting}: " if setting else ""
    scheme, _, rest = str(value).partition("://")
    if scheme not in SCHEMES:
        raise ValueError(f"{where}{value!r}: unknown scheme {scheme!r}; use s3://bucket/prefix or a local folder")
    bucket, _, key = rest.strip("/").partition("/")
    if not bucket or "/" in bucket or bucket in (".", ".."):
        raise ValueError(f"{where}{value!r} names no bucket: use {scheme}://bucket/prefix")
    return scheme, bucket, key.strip("/")


def _names(text: str) -> list[str]:
    """The items of a comma-separated setting, stripped, empty ones dropped."""
    return [item.strip() for item in text.split(",") if item.strip()]


def _default_data_dir() -> Path:
    """``data/`` of the source checkout churnflow runs from; for an installed package (no
    checkout around it) ``data/`` in the working directory: set ``CHURNFLOW_DATA_DIR`` there."""
    if (REPO_ROOT / "pyproject.toml").is_file() and (REPO_ROOT / "dags").is_dir():
        return REPO_ROOT / "data"
    return Path("data").resolve()


#: settings an earlier churnflow had, with what replaced them (said instead of "unknown setting")
REMOVED_SETTINGS = {
    "risk_band_high": "the risk bands are the campaign's decision now: 'high' is tonight's campaign (at or above "
                      "the model's threshold, at most campaign_daily_capacity), 'medium' at or above the threshold "
                      "but over the capacity, 'low' below it; default_threshold serves a model without a threshold",
    "risk_band_medium": "the risk bands are the campaign's decision now (see risk_band_high)",
}


#: the key of a setting's :class:`Spec` in its dataclass field's metadata
_SPEC = "churnflow"
_T = TypeVar("_T")


@dataclass(frozen=True)
class Spec:
    """What a setting declares beside its type and default: its valid range ``[low, high]`` (every
    number has one), its closed set of values (``choices``), a short title and its help text. The
    checks of :class:`Settings` and the DAGs' trigger forms (``churnflow_airflow.params``) read it."""

    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    title: str = ""
    help: str = ""


def setting(default: _T, *, low: float | None = None, high: float | None = None, choices: tuple[str, ...] = (),
            title: str = "", help: str = "") -> _T:
    """A setting's dataclass field: its default and its :class:`Spec` (typed as the default, as
    ``dataclasses.field`` is, so the annotation is checked against it)."""
    if (low is None) != (high is None):
        raise TypeError("a setting's range needs both ends (low and high)")
    rule = Spec(low, high, tuple(choices), title, " ".join(help.split()))
    return cast(_T, dataclasses.field(default=default, metadata={_SPEC: rule}))


def spec(name: str) -> Spec:
    """The :class:`Spec` of setting ``name`` (a KeyError for a name that is not a setting)."""
    return _spec(_FIELDS[name])


# --- the settings by stage: one frozen dataclass per section; Settings composes them -------------
# (their order here is the order of Settings' fields; a YAML file may group its keys by section)


@dataclass(frozen=True)
class StorageSettings:
    """Where churnflow keeps its data, artifacts, results and models."""

    data_dir: Path = dataclasses.field(default_factory=_default_data_dir, metadata={_SPEC: Spec(
        title="Data folder", help="the data folder: landing files, quarantine, reports, the local stores")})
    min_free_disk_mb: int = setting(512, low=0, high=100_000_000, title="Least free disk (MiB)",
                                    help="a run refuses to start with less free space than this in data_dir")
    lake_url: str = setting("", title="Lake", help="""the lake: empty = <data_dir>/lake, a local folder, or
        s3://bucket/prefix (pip install 'churnflow[s3]'; endpoint and credentials from the standard AWS places:
        AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_PROFILE, ...). DuckDB reads it through fsspec (pipeline.storage)""")
    artifacts_url: str = setting("", title="Run artifacts", help="""the run artifacts (runs/<dag>/<D>/<task>/,
        paths or s3:// URLs in XCom): empty = <data_dir>/runs, a local folder, or s3://bucket/prefix, as lake_url""")
    source_db_url: str = setting("", title="Customer database", help="""SQLAlchemy URL of the customer database;
        empty means SQLite at <data_dir>/source.db""")
    results_db_url: str = setting("", title="Results store", help="""SQLAlchemy URL of the results store (scores,
        monitoring tables, alerts: pipeline.results); empty means SQLite at <data_dir>/results.db. The source
        database is only ever read.""")
    mlflow_tracking_uri: str = setting("", title="MLflow tracking URI", help="""MLflow tracking and model-registry
        URI (e.g. http://mlflow.internal:5000); empty means a local store under <data_dir>/mlflow/ (SQLite
        backend, local artifacts): no server needed""")


@dataclass(frozen=True)
class IngestionSettings:
    """What is read from the business's sources, and how it is checked."""

    source_tables: str = setting(
        "customers,subscriptions,payments,plan_changes,support_tickets,cancellations,events", title="Source tables",
        help="""the tables your business has (comma-separated; customers is required): the others are not
        ingested, waited for or checked, and the feature groups that read them are left out""")
    history_start: str = setting("", title="History start", help="""the training DAG re-extracts the
        customer-database tables from this date on (and takes landed event days from it); empty: from the
        earliest row each source holds""")
    training_reextract: str = setting("changed", choices=("changed", "full"), title="Training re-extract",
                                      help="""what the training DAG re-extracts of the customer-database tables
        (healing the lake where the database changed behind the nights' windows): changed = only the days whose
        row count (or count of filled-in resolved_at / end_date values) differs from what the last training run
        recorded, the days since it, and the days with rows of customers unknown then (docs/operations.md);
        full = every day from history_start, which also heals an in-place update that keeps the counts (a
        corrected amount)""")
    ingest_chunk_rows: int = setting(500_000, low=1, high=50_000_000, title="Rows per ingest chunk", help="""rows
        per chunk when ingesting: fetched per round trip from the source database, read at most from one event
        file, and validated at a time (memory is bounded by a chunk)""")
    lake_compact_after_days: int = setting(7, low=0, high=366, title="Compact a period after (days)", help="""a
        closed month's day files in the lake are merged into one month file (a closed year's, of the slowly
        changing tables, into one year file) by the first batch that ends this many days after its last day (a
        night that re-ingests a month's last days then rewrites a day file, not the whole month)""")
    sql_dir: str = setting("", title="Your SQL folder", help="""a folder of your own ingest_<table>.sql files
        mapping your database onto the source contract (README: "Map your data in"); a file not there is the
        packaged one""")
    max_category_values: int = setting(10_000, low=2, high=100_000_000, title="Most values of a category",
                                       help="""a category column (plan, payment_method, region, ...) takes any
        values, at most this many distinct ones per validated chunk (more: an id or free text mapped onto a
        category)""")
    closed_vocabularies: str = setting("", title="Closed vocabularies", help="""closed sets you declare for your
        own category columns, validated on every batch: "table.column=value|value|...; table.column=..." (e.g.
        "subscriptions.plan=basic|pro")""")


@dataclass(frozen=True)
class ReadinessSettings:
    """The readiness gate (churn_nightly waits for its data) and how long a run may take."""

    readiness_timeout_minutes: int = setting(360, low=0, high=7 * 24 * 60, title="Readiness timeout (minutes)",
                                             help="""how long a night waits for its landing partitions and a fresh
        source before it fails""")
    readiness_poke_seconds: int = setting(60, low=1, high=24 * 3600, title="Seconds between readiness checks",
                                          help="""seconds between two checks while waiting (the sensor gives its
        worker slot back meanwhile)""")
    nightly_run_timeout_minutes: int = setting(480, low=1, high=7 * 24 * 60, title="Nightly run timeout (minutes)",
                                               help="""a churn_nightly run still unfinished after this long is failed
        by Airflow (dagrun_timeout), so one stuck run never holds back the next scheduled one""")
    training_run_timeout_minutes: int = setting(360, low=1, high=7 * 24 * 60,
                                                title="Training run timeout (minutes)",
                                                help="the same for a churn_training run")
    source_max_lag_hours: int = setting(24, low=0, high=24 * 365, title="Most source lag (hours)", help="""the
        source is fresh when its newest row (any table's time column) is at most this many hours before the
        window end""")


@dataclass(frozen=True)
class LabelSettings:
    """What churn means, and the snapshots a model learns it from."""

    label_kind: str = setting("cancellation", choices=LABEL_KINDS, title="What churn means", help="""cancellation:
        an explicit cancellation within the horizon; inactivity: no event and no successful payment for
        inactivity_days (a business without cancellations, e.g. purchases that stop); non_renewal: a
        subscription period ending within the horizon is not renewed within renewal_grace_days; provided: the
        business's own labels table""")
    horizon_days: int = setting(30, low=1, high=730, title="Churn horizon (days)",
                                help="a customer churns when they cancel within this many days")
    inactivity_days: int = setting(30, low=1, high=730, title="Inactivity window (days)",
                                   help="with label_kind inactivity: churned when inactive this many days")
    renewal_grace_days: int = setting(30, low=0, high=730, title="Renewal grace (days)", help="""with label_kind
        non_renewal: a period counts as renewed when a new one starts within this many days after it ends""")
    training_snapshots: int = setting(6, low=2, high=120, title="Month-start snapshots", help="""how many monthly
        snapshots (the most recent complete month starts) to train and evaluate on""")
    holdout_snapshots: int = setting(1, low=1, high=24, title="Holdout snapshots",
                                     help="how many of the latest snapshots form the out-of-time holdout")


@dataclass(frozen=True)
class FeatureSettings:
    """Which features are built, and in how many pieces the nightly builds and scores them."""

    feature_groups: str = setting("customer,subscription,events,payments,plan_changes,support,renewal",
                                  title="Feature groups", help="""the feature groups a model may use
        (pipeline.features.catalogue.GROUPS): customer, subscription, events, payments, plan_changes, support,
        purchases (RFM: for a transaction business), renewal (subscription periods with an end_date /
        auto_renew)""")
    partitions: int = setting(1, low=1, high=1024, title="Nightly partitions", help="""the nightly's features and
        scores run as this many mapped pieces, each over one customer-hash bucket
        (pipeline/features/partitions.py), then one step combines them: 1 = one piece""")


@dataclass(frozen=True)
class ModelSettings:
    """The registered model and the defaults of its learners."""

    model_name: str = setting("churnflow", title="Registered model", help="""the registered model (and MLflow
        experiment) the pipeline's models go to; train-table models go to "<model_name>-table\"""")
    random_seed: int = setting(42, low=0, high=2**32 - 1, title="Random seed")
    xgb_n_estimators: int = setting(500, low=1, high=100_000, title="XGBoost's most trees", help="""XGBoost's most
        trees (CV early stopping picks how many)""")
    xgb_max_depth: int = setting(3, low=1, high=20, title="XGBoost tree depth",
                                 help="the depth of the search's default draw")
    xgb_learning_rate: float = setting(0.03, low=1e-4, high=1.0, title="XGBoost learning rate",
                                       help="the learning rate of the search's default draw")
    n_jobs: int = setting(2, low=1, high=1024, title="Parallel jobs", help="the cores a fit or search uses")
    default_threshold: float = setting(0.5, low=0.0, high=1.0, title="Default campaign threshold", help="""the
        campaign threshold of a model that recorded none (a train-table model); a model trained by churnflow
        carries its own (metrics.json "threshold")""")


@dataclass(frozen=True)
class TrainingSettings:
    """Training: candidates, search, calibration, campaign threshold, and the champion gate."""

    candidates: str = setting("logreg,hgb,random_forest,xgboost", title="Candidate families",
                              help="""candidate families tried by each training run (logreg, hgb: scikit-learn's
        HistGradientBoostingClassifier, random_forest, xgboost, *_smote); within one standard error of the best
        mean CV ROC-AUC the simplest wins (logreg < hgb < random_forest < xgboost; docs/training.md)""")
    search_iterations: int = setting(2, low=1, high=1000, title="Search budget", help="""randomized-search draws
        per candidate family (the first draw is the default config)""")
    cv_folds: int = setting(2, low=1, high=20, title="Time CV folds", help="""expanding-window time folds (the
        latest training-side snapshots as validation)""")
    search_sample_rows: int = setting(250_000, low=0, high=1_000_000_000, title="Search sample (rows)", help="""the
        search and its CV run on a sample of this many training rows, stratified by snapshot and label (0: all
        rows); the chosen candidate is then fitted on every row""")
    slow_fit_max_rows: int = setting(500_000, low=0, high=1_000_000_000, title="Slow fits' most rows", help="""*_smote
        and random_forest candidates (cost growing faster than the rows) are fitted on a stratified sample of at
        most this many rows (0: no limit)""")
    calibration: str = setting("sigmoid", choices=("isotonic", "sigmoid"), title="Probability calibration",
                               help="""probability calibration, cross-fitted: fitted on out-of-fold predictions
        of the chosen candidate (calibration_folds), the model on every training row""")
    calibration_folds: int = setting(5, low=2, high=20, title="Calibration folds", help="""stratified folds of
        the customers: each fold's rows of the latest training snapshot are scored by the chosen candidate
        fitted on every other training row, and those predictions calibrate the model fitted on all of them;
        where the search ran on a sample (search_sample_rows) the search's CV folds' predictions calibrate
        instead (no extra fit)""")
    campaign_customer_value: float = setting(200.0, low=0.0, high=1e9, title="Customer value", help="""campaign
        economics for the decision threshold (see pipeline.model.evaluate.Campaign): a saved customer's value""")
    campaign_save_rate: float = setting(0.3, low=0.0, high=1.0, title="Save rate",
                                        help="the share of contacted churners the campaign keeps")
    campaign_contact_cost: float = setting(5.0, low=0.0, high=1e9, title="Contact cost",
                                           help="what contacting one customer costs")
    campaign_daily_capacity: int = setting(500, low=0, high=1_000_000_000, title="Campaign capacity per night",
                                           help="""most customers contacted per night: the campaign list and the
        "high" risk band are the highest-risk customers at or above the threshold, at most this many (0: no
        limit)""")
    promotion_min_improvement: float = setting(0.0, low=-1.0, high=1.0, title="Promotion margin (ROC-AUC)",
                                               help="""the gate: a new model replaces the champion only if it is
        better on ROC-AUC beyond noise on the same holdout (by more than this margin; a tie never promotes) and
        not worse on PR-AUC / campaign value beyond their tolerances""")
    promotion_test: str = setting("bootstrap", choices=("bootstrap", "margin"), title="Promotion evidence test",
                                  help="""bootstrap: the ROC-AUC difference must exceed the margin and so must the
        lower bound of its one-sided confidence interval (promotion_confidence) from a paired bootstrap over the
        holdout rows (both models scored on the same resamples); margin: the observed difference alone must
        exceed the margin""")
    promotion_bootstrap_samples: int = setting(1000, low=100, high=100_000, title="Bootstrap resamples",
                                               help="""resamples of the holdout rows for the promotion_test
        bootstrap (seeded by random_seed: a verdict replays identically)""")
    promotion_confidence: float = setting(0.95, low=0.5, high=0.999, title="Promotion confidence",
                                          help="""the bootstrap's one-sided confidence: the ROC-AUC difference's
        lower bound (its 1 - confidence quantile over the resamples) must be above the margin""")
    promotion_pr_auc_tolerance: float = setting(0.01, low=0.0, high=1.0, title="PR-AUC a promotion may lose",
                                                help="""a new model better on ROC-AUC is still not promoted when its
        PR-AUC on the same holdout is below the champion's by more than this""")
    promotion_value_tolerance: float = setting(0.05, low=0.0, high=1.0, title="Campaign value a promotion may lose",
                                               help="""... nor when the campaign's expected value at its capacity
        (campaign_daily_capacity) on the same holdout is below the champion's by more than this share of it""")
    promotion_min_roc_auc: float = setting(0.55, low=0.0, high=1.0, title="Least ROC-AUC to promote", help="""no
        model below this out-of-time ROC-AUC is promoted, not even the first (0.5: chance)""")


@dataclass(frozen=True)
class MonitoringSettings:
    """The nightly's drift, performance, fairness and challenger checks, alerts and dashboard."""

    drift_report_sample_rows: int = setting(20_000, low=100, high=10_000_000, title="Rows in the visual drift report",
                                            help="""rows sampled from each side for the visual Evidently report
        (statistics always use all rows)""")
    reference_sample_rows: int = setting(50_000, low=100, high=10_000_000, title="Reference sample (rows)",
                                         help="""rows of the model's holdout (the latest labelled rows
        before its training date, which it was not fitted on) saved with it: the drift reference""")
    drift_share_threshold: float = setting(0.5, low=0.0, high=1.0, title="Critical drift share", help="""drift
        share of features at or above which a critical alert fires""")
    drift_share_warning: float = setting(0.2, low=0.0, high=1.0, title="Warning drift share", help="""drift share
        of features at or above which a warning fires (critical: drift_share_threshold)""")
    psi_warning: float = setting(0.1, low=0.0, high=100.0, title="Warning PSI", help="""PSI of one feature, or of
        the score distribution, that raises a warning""")
    psi_critical: float = setting(0.25, low=0.0, high=100.0, title="Critical PSI", help="""PSI of one feature, or
        of the score distribution, that raises a critical alert""")
    drift_min_importance_share: float = setting(0.05, low=0.0, high=1.0, title="Least importance share of drift",
                                                help="""drift only in features the model barely uses (of the features
        that moved tonight, the least important ones that together carry less than this share of its mean |SHAP| on
        its training reference) is an info data-quality note, never critical; data_drift and feature_psi judge the
        features it uses""")
    performance_drop_margin: float = setting(0.05, low=0.0, high=1.0, title="Performance drop margin", help="""concept
        drift: matured-label ROC-AUC or PR-AUC below the champion's holdout minus this""")
    performance_min_positives: int = setting(20, low=1, high=1_000_000, title="Least matured churners", help="""matured
        nights with fewer churners than this are reported but never flag concept drift""")
    estimate_simulations: int = setting(200, low=10, high=100_000, title="Estimate simulations", help="""the
        estimated performance's band: label sets drawn from the champion's calibrated probabilities
        (y ~ Bernoulli(p), seeded by random_seed), each scored like matured labels""")
    estimate_sample_rows: int = setting(100_000, low=1_000, high=100_000_000, title="Estimate band rows",
                                        help="""most customers each simulation of the band draws labels for (a
        seeded sample; its spread is rescaled to the night's customers): bounds the cost on large nights""")
    estimate_confidence: float = setting(0.9, low=0.5, high=0.999, title="Estimate band confidence", help="""the
        band's coverage: its bounds are the simulated metrics' (1 - this) / 2 and (1 + this) / 2 quantiles""")
    estimate_max_calibration_gap: float = setting(0.05, low=0.0, high=1.0, title="Most calibration gap",
                                                  help="""the estimate assumes calibrated probabilities: when the
        newest matured night's calibration error (ECE over 10 equal-count bins, at least the gap between mean
        probability and churn rate) exceeds this, the estimate is marked unreliable and raises no alert""")
    fairness_segments: str = setting("age_band,gender,region", title="Fairness segments", help="""comma-separated
        segments for fairness (age_band is derived from age)""")
    fairness_min_ratio: float = setting(0.8, low=0.0, high=1.0, title="Least positive-rate ratio", help="""positive-rate
        ratio below this breaks the 80% rule""")
    fairness_min_expected_positives: int = setting(20, low=1, high=1_000_000, title="Least expected positives",
                                                   help="""the 80% rule is judged only where a group would hold
        this many positives at the top group's rate""")
    fairness_p_value: float = setting(0.01, low=0.0, high=1.0, title="Fairness p-value", help="""... and only where
        the group's positives are significantly (one-sided binomial p) below the champion's training-reference
        ratio: a disparity the model always had is reported, not re-alerted""")
    fairness_max_tpr_gap: float = setting(0.2, low=0.0, high=1.0, title="Most TPR gap",
                                          help="a true-positive-rate gap between groups above this is flagged")
    alert_cooldown_days: int = setting(7, low=0, high=365, title="Alert cooldown (days)", help="""the same alert
        (rule, model, group) is not re-sent within this many days""")
    trend_nights: int = setting(14, low=1, high=366, title="Trend nights",
                                help="nights shown in the trend chart")
    prediction_baseline_nights: int = setting(7, low=1, high=366, title="Prediction baseline nights",
                                              help="earlier nights the night's predictions are compared with")
    retrain_on_critical: bool = setting(True, title="Retrain on a critical alert", help="""a critical drift or
        performance alert requests a churn_training run (Airflow Asset)""")
    concept_drift_detectors: str = setting("adwin,ddm", title="Concept-drift detectors", help="""concept drift as
        it happens (pipeline/monitoring/concept.py): the sequential detectors fed each night with the matured
        predictions' errors, comma-separated (adwin, ddm); empty: none""")
    concept_drift_adwin_delta: float = setting(0.002, low=1e-12, high=0.5, title="ADWIN delta", help="""ADWIN's
        confidence: smaller means fewer false alarms and later detections""")
    concept_drift_ddm_threshold: float = setting(3.0, low=1.0, high=100.0, title="DDM threshold", help="""DDM
        detects when the error rate plus its deviation exceeds its best by this many deviations""")
    concept_drift_warm_start: int = setting(300, low=1, high=100_000_000, title="Detectors' warm start", help="""errors
        a detector sees (after a change, again) before it may detect one""")
    concept_drift_seed_rows: int = setting(20_000, low=0, high=100_000_000, title="Detectors' seed (rows)",
                                           help="""a detector starting for a model version is first fed at most this
        many of the model's own errors on its training holdout (what normal was; changes found then are not reported),
        so that a change from the deployment day on is found; 0: not seeded""")
    importance_sample_rows: int = setting(20_000, low=0, high=10_000_000, title="Importance sample (rows)",
                                          help="""feature-importance drift: mean |SHAP| per feature tonight vs the
        training reference, each on at most this many rows (a fixed sample; 0: not computed)""")
    schema_drift_null_margin: float = setting(0.1, low=0.0, high=1.0, title="Schema-drift null margin", help="""schema
        drift (pipeline/monitoring/schema_drift.py): an optional source column the champion was trained with is
        flagged when tonight's rows hold no value in it in a share above its null share in training plus this
        margin (and significantly so), or when the source did not return it at all""")
    schema_drift_critical_share: float = setting(0.2, low=0.0, high=1.0, title="Schema-drift critical share",
                                                 help="""a schema_drift alert is critical (not a warning) when the
        features made from the column carry more than this share of the model's mean |SHAP| on its training
        reference""")
    challenger_version: str = setting("", title="Challenger version", help="""a challenger in shadow
        (pipeline/monitoring/challenger.py): the registered version scored each night beside the champion (its
        scores in challenger_scores, never the campaign); empty = the newest version registered after the
        champion and never promoted""")
    challenger_min_nights: int = setting(7, low=0, high=366, title="Challenger's winning nights", help="""the nights
        with matured labels in a row on which the challenger must beat the champion (ROC-AUC higher by more than
        promotion_min_improvement) for a promotion_review alert; 0: no challenger""")
    dashboard_workspace: str = setting("", title="Dashboard workspace", help="""the Evidently workspace of the
        nights' dashboard: empty = <data_dir>/dashboard, a folder, or the URL of a running Evidently UI
        (http://host:8000) that the nightly writes to""")
    dashboard_top_features: int = setting(5, low=1, high=50, title="Dashboard features",
                                          help="features with the highest PSI each night that the dashboard tracks")
    dashboard_url: str = setting("http://localhost:8000", title="Dashboard address", help="""the address analysts
        open the dashboard of nights at (make dashboard serves http://localhost:8000, DASHBOARD_PORT): the e-mail
        links each night's page there; ignored when dashboard_workspace is a URL (that UI's address is used); empty:
        no link""")


@dataclass(frozen=True)
class EmailSettings:
    """The nightly e-mail."""

    email_recipients: str = setting("analysts@example.com", title="Report recipients",
                                    help="comma-separated analyst addresses")
    email_sender: str = setting("churnflow@localhost", title="Sender")
    smtp_conn_id: str = setting("smtp_default", title="SMTP connection",
                                help="the Airflow connection the DAGs send through")
    email_max_bytes: int = setting(2_000_000, low=100_000, high=1_000_000_000, title="Most e-mail bytes", help="""the
        nightly message's size limit (bytes, as sent): over it, the drift report loses its detail plots, then the
        campaign list is zipped, then what still does not fit stays on disk, named""")
    campaign_columns: str = setting("plan,tenure_days,name,email,phone", title="Campaign file's customer columns",
                                    help="""comma-separated customer columns the campaign file carries for the
        agents after its rank, probability, expected value and reasons: plan, tenure_days, monthly_fee,
        payment_method, signup_date, name, email, phone (contact fields your ingest_customers.sql maps in),
        region, gender, birth_year, acquisition_channel; one your data lacks is left out with its reason (logged);
        empty: none""")
    email_enabled: bool = setting(True, title="Send the e-mail", help="""send the nightly e-mail at all (a manual
        trigger can also switch it off)""")
    smtp_host: str = setting("localhost", title="SMTP host", help="""SMTP server for the command line (the DAGs
        use the Airflow connection instead)""")
    smtp_port: int = setting(25, low=1, high=65535, title="SMTP port", help="the command line's SMTP port")


@dataclass(frozen=True)
class ServingSettings:
    """The score API (``python -m pipeline serve``: pipeline/api.py), read-only over the results store."""

    api_host: str = setting("127.0.0.1", title="API host", help="""the address the score API listens on
        (0.0.0.0: every interface)""")
    api_port: int = setting(8001, low=1, high=65535, title="API port", help="the score API's port")
    api_token: str = dataclasses.field(default="", repr=False, metadata={_SPEC: Spec(title="API token", help="""a
        bearer token the score API's /v1 endpoints require (Authorization: Bearer <token>); empty: none. Never
        logged nor printed""")})
    api_db_url: str = setting("", title="API's results store URL", help="""the SQLAlchemy URL the score API reads
        the results store with (a read-only role's, for PostgreSQL); empty means results_db_url""")
    api_page_size: int = setting(100, low=1, high=10_000, title="API page size", help="""customers per page of
        GET /v1/campaigns/{date} when the request names no limit (the largest limit is 10 times this)""")


#: the sections of the settings, by name (a YAML file may group its settings under these names)
SECTIONS: dict[str, type] = {
    "storage": StorageSettings, "ingestion": IngestionSettings, "readiness": ReadinessSettings,
    "labels": LabelSettings, "features": FeatureSettings, "model": ModelSettings, "training": TrainingSettings,
    "monitoring": MonitoringSettings, "email": EmailSettings, "serving": ServingSettings,
}


@dataclass(frozen=True)
class Settings(ServingSettings, EmailSettings, MonitoringSettings, TrainingSettings, ModelSettings, FeatureSettings,
               LabelSettings, ReadinessSettings, IngestionSettings, StorageSettings):
    """All tunables of churnflow, one flat typed attribute each (``settings.horizon_days``), declared
    by section (:data:`SECTIONS`; the bases are listed last section first, so the fields come in
    section order). Relative paths are relative to the working directory (in a YAML file: to its
    folder)."""

    @staticmethod
    def section_of(name: str) -> str:
        """The section setting ``name`` belongs to."""
        return _SECTION_OF[name]

    def section(self, name: str) -> dict[str, Any]:
        """The settings of section ``name``, in declaration order, with their values."""
        return {f.name: getattr(self, f.name) for f in fields(SECTIONS[name])}

    @property
    def db_url(self) -> str:
        return self.source_db_url or f"sqlite:///{(self.data_dir / 'source.db').resolve()}"

    @property
    def source_table_names(self) -> list[str]:
        """The declared tables; the business's ``labels`` too when it provides its labels."""
        names = _names(self.source_tables)
        return [*names, "labels"] if self.label_kind == "provided" and "labels" not in names else names

    @property
    def feature_group_names(self) -> list[str]:
        return _names(self.feature_groups)

    @property
    def label_window_days(self) -> int:
        """The label window ``[as_of, as_of + N)`` (the data a label needs after its snapshot):
        ``inactivity_days`` for inactivity churn, ``horizon_days + renewal_grace_days`` for
        non-renewal, ``horizon_days`` otherwise."""
        if self.label_kind == "inactivity":
            return self.inactivity_days
        if self.label_kind == "non_renewal":
            return self.horizon_days + self.renewal_grace_days
        return self.horizon_days

    @property
    def closed_sets(self) -> dict[str, dict[str, tuple[str, ...]]]:
        """``closed_vocabularies`` parsed: table -> column -> allowed values."""
        out: dict[str, dict[str, tuple[str, ...]]] = {}
        for entry in (e.strip() for e in self.closed_vocabularies.split(";")):
            if not entry:
                continue
            target, _, values = entry.partition("=")
            table, _, column = target.strip().partition(".")
            allowed = tuple(v.strip() for v in values.split("|") if v.strip())
            if not table or not column or not allowed:
                raise ValueError(f"config closed_vocabularies: {entry!r} is not 'table.column=value|value|...'")
            out.setdefault(table, {})[column] = allowed
        return out

    @property
    def mlflow_dir(self) -> Path:
        """The local MLflow store (used when ``mlflow_tracking_uri`` is empty)."""
        return self.data_dir / "mlflow"

    @property
    def tracking_uri(self) -> str:
        return self.mlflow_tracking_uri or f"sqlite:///{(self.mlflow_dir / 'mlflow.db').resolve()}"

    @property
    def model_cache_dir(self) -> Path:
        """Verified local copies of registered model versions (immutable, so never stale)."""
        return self.data_dir / "model_cache"

    @property
    def results_url(self) -> str:
        return self.results_db_url or f"sqlite:///{(self.data_dir / 'results.db').resolve()}"

    @property
    def landing_dir(self) -> Path:
        return self.data_dir / "landing"

    @property
    def lake_dir(self) -> Path:
        """The lake when ``lake_url`` is empty (:func:`pipeline.storage.lake_root`: where it is)."""
        return self.data_dir / "lake"

    @property
    def quarantine_dir(self) -> Path:
        return self.data_dir / "quarantine"

    @property
    def runs_dir(self) -> Path:
        """The run artifacts when ``artifacts_url`` is empty (:func:`pipeline.storage.artifacts_root`)."""
        return self.data_dir / "runs"

    @property
    def models_dir(self) -> Path:
        """churnflow's earlier file registry (before MLflow): only read by ``models migrate``."""
        return self.data_dir / "models"

    @property
    def reports_dir(self) -> Path:
        return self.data_dir / "reports"

    @property
    def dashboard_project(self) -> str:
        """The Evidently project of this model's nights."""
        return f"churnflow: {self.model_name}"

    @property
    def dashboard_location(self) -> str:
        """Where the nightly writes its dashboard snapshot: a running Evidently UI's URL, or the
        folder of a local Evidently workspace (``evidently ui --workspace`` serves it)."""
        if self.dashboard_workspace.startswith(("http://", "https://")):
            return self.dashboard_workspace
        return str(Path(self.dashboard_workspace) if self.dashboard_workspace else self.data_dir / "dashboard")

    @property
    def simulator_dir(self) -> Path:
        """Generator-only: what a live simulated business has not landed yet (churnflow_sim.simulator)."""
        return self.data_dir / "simulator"

    @property
    def simulator_db(self) -> Path:
        """The live business's pending source rows (SQLite); its existence makes a data dir live."""
        return self.simulator_dir / "pending.db"

    @property
    def truth_dir(self) -> Path:
        """Generator-only ground truth (true churn probabilities); never read by the pipeline."""
        return self.data_dir / "truth"

    @property
    def segments(self) -> list[str]:
        return _names(self.fairness_segments)

    @property
    def campaign_column_names(self) -> list[str]:
        """``campaign_columns`` parsed (checked against :data:`CAMPAIGN_COLUMN_NAMES`)."""
        return _names(self.campaign_columns)

    @property
    def recipients(self) -> list[str]:
        return _names(self.email_recipients)

    @property
    def concept_detectors(self) -> list[str]:
        """``concept_drift_detectors`` parsed (checked against the known detectors)."""
        return _names(self.concept_drift_detectors)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    def __post_init__(self) -> None:
        for f in fields(self):
            rule, value = _spec(f), getattr(self, f.name)
            if rule.low is not None and rule.high is not None and not rule.low <= value <= rule.high:
                raise ValueError(f"config {f.name}: {value!r} is out of its valid range [{rule.low:g}, {rule.high:g}]")
            if rule.choices and value not in rule.choices:
                raise ValueError(f"config {f.name}: {value!r} is not one of {', '.join(rule.choices)}")
        from pipeline.tables import FEATURE_GROUP_NAMES, LAKE_TABLE_NAMES

        unknown = [t for t in self.source_table_names if t not in LAKE_TABLE_NAMES]
        if unknown or "customers" not in self.source_table_names:
            raise ValueError(f"config source_tables: {self.source_tables!r}: " + (
                f"unknown table(s) {unknown}" if unknown else "customers is required")
                + f"; the tables are {', '.join(LAKE_TABLE_NAMES)}")
        unknown = [g for g in self.feature_group_names if g not in FEATURE_GROUP_NAMES]
        if unknown:
            raise ValueError(f"config feature_groups: unknown group(s) {unknown}; the groups are "
                             f"{', '.join(FEATURE_GROUP_NAMES)}")
        if self.nightly_run_timeout_minutes <= self.readiness_timeout_minutes:
            raise ValueError(f"config nightly_run_timeout_minutes ({self.nightly_run_timeout_minutes}) must exceed "
                             f"readiness_timeout_minutes ({self.readiness_timeout_minutes}): a night that waited the "
                             "whole readiness timeout still needs time to run")
        from pipeline.tables import LAKE_TABLE_NAMES as _tables

        unknown_tables = sorted(set(self.closed_sets) - set(_tables))
        if unknown_tables:
            raise ValueError(f"config closed_vocabularies: unknown table(s) {unknown_tables}; the tables are "
                             f"{', '.join(_tables)}")
        for name in URL_SETTINGS:
            if is_url(getattr(self, name)):
                parse_url(getattr(self, name), name)
        unknown = [c for c in self.campaign_column_names if c not in CAMPAIGN_COLUMN_NAMES]
        if unknown:
            raise ValueError(f"config campaign_columns: {unknown[0]!r} is not a customers column; choose from "
                             f"{', '.join(CAMPAIGN_COLUMN_NAMES)} (empty: none)")
        unknown = [d for d in self.concept_detectors if d not in CONCEPT_DETECTORS]
        if unknown:
            raise ValueError(f"config concept_drift_detectors: unknown detector(s) {unknown}; the detectors are "
                             f"{', '.join(CONCEPT_DETECTORS)} (empty: none)")
        challenger = self.challenger_version.strip().lower().removeprefix("v")
        if challenger and (not challenger.isdigit() or int(challenger) < 1):
            raise ValueError(f"config challenger_version: {self.challenger_version!r}: a version such as v3 or 3 "
                             "(empty: the newest version registered after the champion and never promoted)")
        if not self.model_name or not all(c.isalnum() or c in "-_." for c in self.model_name):
            raise ValueError(f"config model_name: {self.model_name!r}: use letters, digits, '-', '_' or '.'")
        if self.drift_share_warning > self.drift_share_threshold or self.psi_warning > self.psi_critical:
            raise ValueError("config: a warning level (drift_share_warning, psi_warning) must not exceed its critical "
                             f"level (drift_share_threshold, psi_critical); got {self.drift_share_warning} / "
                             f"{self.drift_share_threshold}, {self.psi_warning} / {self.psi_critical}")


def _spec(f: dataclasses.Field[Any]) -> Spec:
    spec_: Spec = f.metadata.get(_SPEC, Spec())
    return spec_


#: every setting's field, by name, in section order
_FIELDS: dict[str, dataclasses.Field[Any]] = {f.name: f for f in fields(Settings)}
#: every setting's type (int, float, bool, str, Path), by name
SETTING_TYPES: dict[str, Any] = get_type_hints(Settings)
_SECTION_OF: dict[str, str] = {f.name: section for section, cls in SECTIONS.items() for f in fields(cls)}

def _coerce(value: Any, typ: Any, name: str) -> Any:
    if typ is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in {"1", "true", "yes", "on"}:
            return True
        if text in {"0", "false", "no", "off", ""}:
            return False
        raise ValueError(f"config {name}: expected a boolean, got {value!r}")
    try:
        if typ is Path:
            return Path(value)
        return typ(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"config {name}: expected {typ.__name__}, got {value!r}") from exc


#: settings that are paths: relative ones in a YAML file are relative to the file's folder
PATH_SETTINGS = ("data_dir", "sql_dir", "lake_url", "artifacts_url")


def _relative_to(folder: Path, loaded: dict[str, Any]) -> dict[str, Any]:
    """``loaded`` with its relative path settings made relative to ``folder`` (a YAML file's),
    so a config file means the same from whichever directory it is used (a URL stays as it is)."""
    out = dict(loaded)
    for name in PATH_SETTINGS:
        value = out.get(name)
        if isinstance(value, str) and value and "://" not in value and not Path(value).expanduser().is_absolute():
            out[name] = str(folder / value)
    return out


def _flatten(loaded: dict[str, Any], path: Path) -> dict[str, Any]:
    """A YAML file's settings as flat keys: a key naming a section (``monitoring:``) holds settings of
    that section. A key that is no setting, a setting under another section or given twice is a
    one-line error naming it."""
    flat: dict[str, Any] = {}
    unknown: list[str] = []
    for key, value in loaded.items():
        items = [(key, value, "")]
        if key in SECTIONS:
            if not isinstance(value, dict):
                raise ValueError(f"config file {path}: {key} is a section: expected a mapping of its settings, "
                                 f"got {value!r}")
            items = [(name, item, key) for name, item in value.items()]
        for name, item, section in items:
            if name not in _FIELDS:
                unknown.append(f"{section}.{name}" if section else name)
            elif section and _SECTION_OF[name] != section:
                raise ValueError(f"config file {path}: {name} is a {_SECTION_OF[name]} setting, not a {section} one: "
                                 f"put it under {_SECTION_OF[name]}: or at the top level")
            elif name in flat:
                raise ValueError(f"config file {path}: {name} is given twice (at the top level and under "
                                 f"{_SECTION_OF[name]}:)")
            else:
                flat[name] = item
    removed = sorted(n for n in unknown if n.rpartition(".")[2] in REMOVED_SETTINGS)
    if removed:
        name = removed[0].rpartition(".")[2]
        raise ValueError(f"config file {path}: {name} is no longer a setting: {REMOVED_SETTINGS[name]}")
    if unknown:
        sections = [n for n in unknown if isinstance(loaded.get(n), dict)]
        raise ValueError(f"config file {path}: unknown settings {sorted(unknown)}"
                         + (f" (the sections are {', '.join(SECTIONS)})" if sections else ""))
    return flat


def load_settings(config_file: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    """Build :class:`Settings` from defaults, a YAML file (flat keys, or keys grouped under their
    section's name), environment variables and overrides."""
    values: dict[str, Any] = {}

    path = Path(config_file or os.environ.get("CHURNFLOW_CONFIG", "churnflow.yaml"))
    if path.is_file():
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"config file {path}: expected a mapping at top level")
        values.update(_relative_to(path.resolve().parent, _flatten(loaded, path)))
    elif config_file:
        raise FileNotFoundError(f"config file {path} does not exist")

    for name in _FIELDS:
        env = os.environ.get(f"CHURNFLOW_{name.upper()}")
        if env is not None:
            values[name] = env
    values.update({k: v for k, v in overrides.items() if v is not None})

    return Settings(**{k: _coerce(v, SETTING_TYPES[k], k) for k, v in values.items()})
