"""One typed place for configuration.

Precedence (highest first): environment variables ``CHURNFLOW_<FIELD>`` (upper case),
then the YAML file named by ``CHURNFLOW_CONFIG`` (default ``churnflow.yaml`` in the
working directory, if present), then the defaults below. A relative path in the YAML file
(``data_dir``, ``sql_dir``) is relative to the file's folder; elsewhere to the working directory.

Example: ``CHURNFLOW_DATA_DIR=/srv/churn CHURNFLOW_HORIZON_DAYS=60 python -m pipeline ...``
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, get_type_hints

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


@dataclass(frozen=True)
class Settings:
    """All tunables of churnflow. Relative paths are relative to the working directory (in a YAML
    file: to its folder)."""

    # --- storage -------------------------------------------------------------------
    data_dir: Path = dataclasses.field(default_factory=_default_data_dir)
    #: a run refuses to start with less free space than this in data_dir (MiB)
    min_free_disk_mb: int = 512
    #: the lake: empty = <data_dir>/lake, a local folder, or s3://bucket/prefix (pip install
    #: 'churnflow[s3]'; endpoint and credentials from the standard AWS places: AWS_ENDPOINT_URL,
    #: AWS_ACCESS_KEY_ID, AWS_PROFILE, ...). DuckDB reads it through fsspec (pipeline.storage)
    lake_url: str = ""
    #: the run artifacts (runs/<dag>/<D>/<task>/, paths or s3:// URLs in XCom): empty =
    #: <data_dir>/runs, a local folder, or s3://bucket/prefix, as lake_url
    artifacts_url: str = ""
    #: SQLAlchemy URL of the customer database; empty means SQLite at <data_dir>/source.db.
    source_db_url: str = ""
    #: SQLAlchemy URL of the results store (scores, monitoring tables, alerts: pipeline.results);
    #: empty means SQLite at <data_dir>/results.db. The source database is only ever read.
    results_db_url: str = ""
    #: rows per chunk when ingesting: fetched per round trip from the source database, read
    #: at most from one event file, and validated at a time (memory is bounded by a chunk)
    ingest_chunk_rows: int = 500_000
    #: the training DAG re-extracts the customer-database tables from this date on (and takes
    #: landed event days from it); empty: from the earliest row each source holds
    history_start: str = ""
    #: the tables your business has (comma-separated; customers is required): the others are not
    #: ingested, waited for or checked, and the feature groups that read them are left out
    source_tables: str = "customers,subscriptions,payments,plan_changes,support_tickets,cancellations,events"
    #: the feature groups a model may use (pipeline.features.build.GROUPS): customer, subscription,
    #: events, payments, plan_changes, support, purchases (RFM: for a transaction business),
    #: renewal (subscription periods with an end_date / auto_renew)
    feature_groups: str = "customer,subscription,events,payments,plan_changes,support,renewal"
    #: a folder of your own ingest_<table>.sql files mapping your database onto the source
    #: contract (README: "Map your data in"); a file not there is the packaged one
    sql_dir: str = ""
    #: a category column (plan, payment_method, region, ...) takes any values, at most this many
    #: distinct ones per validated chunk (more: an id or free text mapped onto a category)
    max_category_values: int = 10_000
    #: closed sets you declare for your own category columns, validated on every batch:
    #: "table.column=value|value|...; table.column=..." (e.g. "subscriptions.plan=basic|pro")
    closed_vocabularies: str = ""
    #: MLflow tracking and model-registry URI (e.g. http://mlflow.internal:5000); empty means a
    #: local store under <data_dir>/mlflow/ (SQLite backend, local artifacts): no server needed
    mlflow_tracking_uri: str = ""
    #: the registered model (and MLflow experiment) the pipeline's models go to; train-table
    #: models go to "<model_name>-table"
    model_name: str = "churnflow"

    # --- readiness gate (churn_nightly waits for its data) -------------------------------
    #: how long a night waits for its landing partitions and a fresh source before it fails
    readiness_timeout_minutes: int = 360
    #: seconds between two checks while waiting (the sensor gives its worker slot back meanwhile)
    readiness_poke_seconds: int = 60
    #: a churn_nightly / churn_training run still unfinished after this long is failed by Airflow
    #: (dagrun_timeout), so one stuck run never holds back the next scheduled one
    nightly_run_timeout_minutes: int = 480
    training_run_timeout_minutes: int = 360
    #: the source is fresh when its newest row (any table's time column) is at most this many
    #: hours before the window end
    source_max_lag_hours: int = 24

    # --- labels and features -----------------------------------------------------------
    #: what churn means (pipeline.features.labels): "cancellation" (an explicit cancellation
    #: within horizon_days), "inactivity" (no event and no successful payment for
    #: inactivity_days: purchases that stop), "non_renewal" (a subscription period ending within
    #: horizon_days is not renewed within renewal_grace_days after its end) or "provided" (the
    #: business's own labels: the labels table)
    label_kind: str = "cancellation"
    horizon_days: int = 30
    #: the inactivity label's window: churned when inactive in [as_of, as_of + inactivity_days)
    inactivity_days: int = 30
    #: non_renewal: a period that ends is renewed when a new one starts within this many days after
    renewal_grace_days: int = 30
    #: month starts used as training snapshots (the most recent complete ones)
    training_snapshots: int = 6
    #: how many of the latest snapshots form the out-of-time holdout
    holdout_snapshots: int = 1

    # --- model -----------------------------------------------------------------------
    random_seed: int = 42
    #: XGBoost's most trees (CV early stopping picks how many); depth and rate of the search's default draw
    xgb_n_estimators: int = 500
    xgb_max_depth: int = 3
    xgb_learning_rate: float = 0.03
    n_jobs: int = 2
    #: the campaign threshold of a model that recorded none (a train-table model); a model
    #: trained by churnflow carries its own (metrics.json "threshold")
    default_threshold: float = 0.5

    # --- training: candidates, search, calibration, campaign threshold ----------------
    #: candidate families tried by each training run (logreg, random_forest, xgboost, *_smote)
    candidates: str = "logreg,random_forest,xgboost,xgboost_smote"
    #: randomized-search draws per candidate family (the first draw is the default config)
    search_iterations: int = 2
    #: expanding-window time folds (latest training-side snapshots as validation)
    cv_folds: int = 2
    #: the search and its CV run on a sample of this many training rows, stratified by snapshot
    #: and label (0: all rows); the chosen candidate is then fitted on every row
    search_sample_rows: int = 250_000
    #: *_smote and random_forest candidates (cost growing faster than the rows) are fitted on a
    #: stratified sample of at most this many rows (0: no limit)
    slow_fit_max_rows: int = 500_000
    #: probability calibration on the latest training-side snapshot: isotonic | sigmoid
    calibration: str = "sigmoid"
    #: campaign economics for the decision threshold (see pipeline.model.evaluate.Campaign)
    campaign_customer_value: float = 200.0
    campaign_save_rate: float = 0.3
    campaign_contact_cost: float = 5.0
    #: most customers contacted per night: the campaign list and the "high" risk band are the
    #: highest-risk customers at or above the threshold, at most this many (0: no limit)
    campaign_daily_capacity: int = 500

    # --- monitoring --------------------------------------------------------------------
    #: rows sampled from each side for the visual Evidently report (statistics use all rows)
    drift_report_sample_rows: int = 20_000
    #: reference sample of training features saved with each model
    reference_sample_rows: int = 50_000
    drift_share_threshold: float = 0.5
    #: drift share of features at or above which a warning fires (critical: drift_share_threshold)
    drift_share_warning: float = 0.2
    #: PSI of one feature, or of the score distribution, that raises a warning / critical alert
    psi_warning: float = 0.1
    psi_critical: float = 0.25
    #: concept drift: matured-label ROC-AUC or PR-AUC below the champion's holdout minus this
    performance_drop_margin: float = 0.05
    #: matured nights with fewer churners than this are reported but never flag concept drift
    performance_min_positives: int = 20
    #: comma-separated segments for fairness (age_band is derived from age)
    fairness_segments: str = "age_band,gender,region"
    #: positive-rate ratio below this breaks the 80% rule; TPR gap above the other is flagged
    fairness_min_ratio: float = 0.8
    #: the 80% rule is judged only where a group would hold this many positives at the top group's rate
    fairness_min_expected_positives: int = 20
    #: ... and only where the group's positives are significantly (one-sided binomial p) below the
    #: champion's training-reference ratio: a disparity the model always had is reported, not re-alerted
    fairness_p_value: float = 0.01
    fairness_max_tpr_gap: float = 0.2
    #: the same alert (rule, model, group) is not re-sent within this many days
    alert_cooldown_days: int = 7
    #: nights shown in the trend chart and compared for prediction drift
    trend_nights: int = 14
    prediction_baseline_nights: int = 7
    #: a critical drift or performance alert requests a churn_training run (Airflow Asset)
    retrain_on_critical: bool = True
    #: concept drift as it happens (pipeline/monitoring/concept.py): the sequential detectors fed each
    #: night with the matured predictions' errors, comma-separated (adwin, ddm); empty: none
    concept_drift_detectors: str = "adwin,ddm"
    #: ADWIN's confidence: smaller means fewer false alarms and later detections
    concept_drift_adwin_delta: float = 0.002
    #: DDM detects when the error rate plus its deviation exceeds its best by this many deviations
    concept_drift_ddm_threshold: float = 3.0
    #: errors a detector sees (after a change, again) before it may detect one
    concept_drift_warm_start: int = 300
    #: feature-importance drift: mean |SHAP| per feature tonight vs the training reference, each on at
    #: most this many rows (a fixed sample; 0: not computed)
    importance_sample_rows: int = 20_000
    #: schema drift (pipeline/monitoring/schema_drift.py): an optional source column the champion was
    #: trained with is flagged when tonight's rows hold no value in it in a share above its null share
    #: in training plus this margin (and significantly so), or when the source did not return it at all
    schema_drift_null_margin: float = 0.1
    #: a schema_drift alert is critical (not a warning) when the features made from the column carry
    #: more than this share of the model's mean |SHAP| on its training reference
    schema_drift_critical_share: float = 0.2
    #: a challenger in shadow (pipeline/monitoring/challenger.py): the registered version scored each
    #: night beside the champion (its scores in challenger_scores, never the campaign); empty = the
    #: newest version registered after the champion and never promoted
    challenger_version: str = ""
    #: the nights with matured labels in a row on which the challenger must beat the champion (ROC-AUC
    #: higher by more than promotion_min_improvement) for a promotion_review alert; 0: no challenger
    challenger_min_nights: int = 7
    #: the nightly's features and scores run as this many mapped pieces, each over one customer-hash
    #: bucket (pipeline/features/partitions.py), then one step combines them: 1 = one piece
    partitions: int = 1
    #: the Evidently workspace of the nights' dashboard: empty = <data_dir>/dashboard, a folder,
    #: or the URL of a running Evidently UI (http://host:8000) that the nightly writes to
    dashboard_workspace: str = ""
    #: features with the highest PSI each night that the dashboard tracks
    dashboard_top_features: int = 5

    # --- e-mail ----------------------------------------------------------------------
    #: comma-separated analyst addresses
    email_recipients: str = "analysts@example.com"
    email_sender: str = "churnflow@localhost"
    smtp_conn_id: str = "smtp_default"
    #: the nightly message's size limit (bytes, as sent): over it, the drift report loses its detail
    #: plots, then the campaign list is zipped, then what still does not fit stays on disk, named
    email_max_bytes: int = 2_000_000
    #: send the nightly e-mail at all (a manual trigger can also switch it off)
    email_enabled: bool = True
    #: SMTP server for the command line (the DAGs use the Airflow connection instead)
    smtp_host: str = "localhost"
    smtp_port: int = 25
    #: ROC-AUC a new model must gain over the champion on the same holdout to be promoted
    promotion_min_improvement: float = 0.0
    #: no model below this out-of-time ROC-AUC is promoted, not even the first (0.5: chance)
    promotion_min_roc_auc: float = 0.55

    # ------------------------------------------------------------------------------
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
    def recipients(self) -> list[str]:
        return _names(self.email_recipients)

    @property
    def concept_detectors(self) -> list[str]:
        """``concept_drift_detectors`` parsed (checked against the known detectors)."""
        return _names(self.concept_drift_detectors)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    def __post_init__(self) -> None:
        for name, (low, high) in RANGES.items():
            value = getattr(self, name)
            if not low <= value <= high:
                raise ValueError(f"config {name}: {value!r} is out of its valid range [{low:g}, {high:g}]")
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
        if self.label_kind not in LABEL_KINDS:
            raise ValueError(f"config label_kind: {self.label_kind!r} is not one of {', '.join(LABEL_KINDS)}")
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


#: the valid range [low, high] of every numeric setting (checked whenever Settings are built;
#: ``tests/test_artifacts.py`` checks that no numeric setting lacks one). README: Configuration.
RANGES: dict[str, tuple[float, float]] = {
    "ingest_chunk_rows": (1, 50_000_000),
    "min_free_disk_mb": (0, 100_000_000),
    "readiness_timeout_minutes": (0, 7 * 24 * 60),
    "readiness_poke_seconds": (1, 24 * 3600),
    "nightly_run_timeout_minutes": (1, 7 * 24 * 60),
    "max_category_values": (2, 100_000_000),
    "training_run_timeout_minutes": (1, 7 * 24 * 60),
    "source_max_lag_hours": (0, 24 * 365),
    "horizon_days": (1, 730),
    "inactivity_days": (1, 730),
    "renewal_grace_days": (0, 730),
    "training_snapshots": (2, 120),
    "holdout_snapshots": (1, 24),
    "random_seed": (0, 2**32 - 1),
    "xgb_n_estimators": (1, 100_000),
    "xgb_max_depth": (1, 20),
    "xgb_learning_rate": (1e-4, 1.0),
    "n_jobs": (1, 1024),
    "default_threshold": (0.0, 1.0),
    "search_iterations": (1, 1000),
    "cv_folds": (1, 20),
    "search_sample_rows": (0, 1_000_000_000),
    "slow_fit_max_rows": (0, 1_000_000_000),
    "campaign_customer_value": (0.0, 1e9),
    "campaign_save_rate": (0.0, 1.0),
    "campaign_contact_cost": (0.0, 1e9),
    "campaign_daily_capacity": (0, 1_000_000_000),
    "drift_report_sample_rows": (100, 10_000_000),
    "reference_sample_rows": (100, 10_000_000),
    "drift_share_threshold": (0.0, 1.0),
    "drift_share_warning": (0.0, 1.0),
    "psi_warning": (0.0, 100.0),
    "psi_critical": (0.0, 100.0),
    "performance_drop_margin": (0.0, 1.0),
    "performance_min_positives": (1, 1_000_000),
    "fairness_min_ratio": (0.0, 1.0),
    "fairness_min_expected_positives": (1, 1_000_000),
    "fairness_p_value": (0.0, 1.0),
    "fairness_max_tpr_gap": (0.0, 1.0),
    "alert_cooldown_days": (0, 365),
    "concept_drift_adwin_delta": (1e-12, 0.5),
    "concept_drift_ddm_threshold": (1.0, 100.0),
    "concept_drift_warm_start": (1, 100_000_000),
    "importance_sample_rows": (0, 10_000_000),
    "schema_drift_null_margin": (0.0, 1.0),
    "schema_drift_critical_share": (0.0, 1.0),
    "challenger_min_nights": (0, 366),
    "trend_nights": (1, 366),
    "dashboard_top_features": (1, 50),
    "partitions": (1, 1024),
    "prediction_baseline_nights": (1, 366),
    "smtp_port": (1, 65535),
    "email_max_bytes": (100_000, 1_000_000_000),
    "promotion_min_improvement": (-1.0, 1.0),
    "promotion_min_roc_auc": (0.0, 1.0),
}


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


def load_settings(config_file: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    """Build :class:`Settings` from defaults, a YAML file, environment variables and overrides."""
    hints = get_type_hints(Settings)
    known = {f.name for f in fields(Settings)}
    values: dict[str, Any] = {}

    path = Path(config_file or os.environ.get("CHURNFLOW_CONFIG", "churnflow.yaml"))
    if path.is_file():
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"config file {path}: expected a mapping at top level")
        unknown = set(loaded) - known
        if unknown & REMOVED_SETTINGS.keys():
            name = sorted(unknown & REMOVED_SETTINGS.keys())[0]
            raise ValueError(f"config file {path}: {name} is no longer a setting: {REMOVED_SETTINGS[name]}")
        if unknown:
            raise ValueError(f"config file {path}: unknown settings {sorted(unknown)}")
        values.update(_relative_to(path.resolve().parent, loaded))
    elif config_file:
        raise FileNotFoundError(f"config file {path} does not exist")

    for name in known:
        env = os.environ.get(f"CHURNFLOW_{name.upper()}")
        if env is not None:
            values[name] = env
    values.update({k: v for k, v in overrides.items() if v is not None})

    return Settings(**{k: _coerce(v, hints[k], k) for k, v in values.items()})
