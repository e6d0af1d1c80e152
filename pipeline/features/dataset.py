"""Training sets: point-in-time features and labels per snapshot, read back compactly,
split out of time, and sampled by stratum; also any labelled customer table (``train-table``).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import storage
from pipeline.artifacts import as_date
from pipeline.config import Settings
from pipeline.errors import TrainingError
from pipeline.storage import Location

log = logging.getLogger(__name__)

#: fewer churners than this in a training set cannot give a usable holdout and CV folds
MIN_POSITIVES = 20


ID_COLUMNS = ["customer_id", "as_of"]


LABEL = "label"


def build_training_set(
    settings: Settings, snapshot_dates: Sequence[dt.date], data_end: dt.date, out_path: Location
) -> Location:
    """Features and labels for every (customer, snapshot) into one Parquet file, one
    snapshot at a time (memory is bounded by a snapshot's population, not by their number)."""
    from pipeline.artifacts import ParquetAppender
    from pipeline.features.build import build_features
    from pipeline.features.labels import build_labels
    from pipeline.progress import Progress

    dates = [str(as_date(d)) for d in snapshot_dates]
    rows = positives = 0
    progress = Progress("training set", len(dates), "snapshots", every_s=0)
    with ParquetAppender(out_path, keep_empty=True) as out:
        for k, snapshot in enumerate(sorted(as_date(d) for d in snapshot_dates), 1):
            feats = build_features(settings, [snapshot])
            labels = build_labels(settings, [snapshot], horizon_days=settings.horizon_days, data_end=data_end,
                                  kind=settings.label_kind,  # type: ignore[arg-type]
                                  inactivity_days=settings.inactivity_days, grace_days=settings.renewal_grace_days)
            df = feats.merge(labels, on=ID_COLUMNS, how="inner", validate="one_to_one")
            if settings.label_kind == "provided":  # the rows are the labelled customers of the population
                log.info("training set %s: %d labelled customers of %d in the population", snapshot, len(df),
                         len(feats))
            elif len(df) != len(feats) or len(df) != len(labels):
                raise TrainingError(
                    f"features ({len(feats)} rows) and labels ({len(labels)} rows) of snapshot {snapshot} cover "
                    f"different populations; joined {len(df)}"
                )
            out.write(df)
            rows += len(df)
            positives += int(df[LABEL].sum())
            del feats, labels, df
            progress.update(k, f"{rows:,} rows")
        if rows == 0:
            from pipeline.features.labels import empty_population

            raise TrainingError(f"training set is empty for snapshots {dates}: "
                                + empty_population(settings.label_kind, settings.horizon_days,
                                                   settings.inactivity_days))
        if positives in (0, rows):
            window = "inactivity_days" if settings.label_kind == "inactivity" else "horizon_days"
            which = ("every row is a non-churner (label 0)" if positives == 0
                     else "every row is a churner (label 1)")
            hint = ("Does the source hold cancellations up to the run's date? A business without cancellations "
                    "(purchases that stop) needs label_kind: inactivity." if settings.label_kind == "cancellation"
                    else f"labels.churned is {int(positives > 0)} on every labelled row of these dates: the labels "
                    "table needs churners and non-churners." if settings.label_kind == "provided"
                    else "Is every customer active (or none) in the window?")
            raise TrainingError(
                f"training set for snapshots {dates} (labels up to {data_end}) has one class: {rows} rows, "
                f"{positives} churners, {which} (label_kind {settings.label_kind}, {settings.label_window_days}-day "
                f"window). {hint} Otherwise choose a later date, more snapshots (training_snapshots) or another "
                f"window ({window})")
        if positives < MIN_POSITIVES:
            raise TrainingError(
                f"training set for snapshots {dates} has only {positives} churners in {rows} rows (label_kind "
                f"{settings.label_kind}): at least {MIN_POSITIVES} are needed to train and evaluate; use more "
                "snapshots (training_snapshots), more history or a longer label window")
    log.info("training set: %d rows, %d snapshots, positive rate %.4f", rows, len(dates), positives / rows)
    return out_path


def read_training_set(path: Location, numeric: Sequence[str], categorical: Sequence[str]) -> pd.DataFrame:
    """The training set with its numeric features as float32 and its categorical ones as
    pandas categoricals: at a million customers x 6 snapshots ~0.6 GB instead of ~2.1 GB of
    int64/float64 and Python strings. float32 is what the tree models compute in anyway
    (XGBoost and scikit-learn's trees cast to it); the drift reference is read back in the
    file's own types (:func:`read_rows`)."""
    import pyarrow as pa

    table = storage.read_arrow(path, read_dictionary=list(categorical))
    wanted = set(numeric)
    for i, field in enumerate(table.schema):
        if field.name in wanted and field.type != pa.float32() and (
                pa.types.is_integer(field.type) or pa.types.is_floating(field.type)):
            table = table.set_column(i, pa.field(field.name, pa.float32()), table.column(i).cast(pa.float32()))
    return table.to_pandas()


def read_rows(path: Location, positions: np.ndarray, columns: list[str]) -> pd.DataFrame:
    """The rows at ``positions`` (ascending) of a Parquet file, in its own types, one batch at a time."""
    import pyarrow as pa

    parts, offset = [], 0
    with storage.parquet_file(path) as file:
        for batch in file.iter_batches(batch_size=500_000, columns=columns):
            lo, hi = np.searchsorted(positions, [offset, offset + batch.num_rows])
            if hi > lo:
                parts.append(pa.Table.from_batches([batch]).take(pa.array(positions[lo:hi] - offset)))
            offset += batch.num_rows
    return pa.concat_tables(parts).to_pandas() if parts else pd.DataFrame(columns=columns)


def time_split(df: pd.DataFrame, holdout_snapshots: int, horizon_days: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split by snapshot date: the latest ``holdout_snapshots`` dates are the holdout.

    Training snapshots whose label window ``[as_of, as_of + horizon)`` reaches past the
    first holdout date are purged: their labels were observed during the holdout period,
    which a model trained at that date could not have known.
    """
    dates = sorted(pd.to_datetime(df["as_of"]).unique())
    if len(dates) <= holdout_snapshots:
        raise TrainingError(
            f"need more than {holdout_snapshots} snapshot dates for an out-of-time holdout, got {len(dates)}"
        )
    holdout_start = dates[-holdout_snapshots]
    as_of = pd.to_datetime(df["as_of"])
    holdout = df[as_of >= holdout_start]
    train = df[as_of + pd.Timedelta(days=horizon_days) <= holdout_start]
    if train.empty:
        raise TrainingError(
            f"no training snapshot ends its {horizon_days}-day label window before the holdout "
            f"starting {holdout_start.date()}: add snapshots"
        )
    return train, holdout


def time_validation_gap(dates: Sequence[dt.date | str], holdout_snapshots: int, horizon_days: int) -> str | None:
    """Why the snapshot dates ``dates`` cannot be validated out of time, or None when they can:
    :func:`time_split` needs more than ``holdout_snapshots`` dates and a training snapshot whose
    label window closes before the holdout, and a time-CV fold (and the calibration split) a
    second training snapshot whose window closes before the latest one
    (:func:`pipeline.model.candidates.time_folds`)."""
    days = sorted({as_date(d) for d in dates})
    window = dt.timedelta(days=horizon_days)
    shown = ", ".join(map(str, days))
    if len(days) <= holdout_snapshots:
        return (f"{len(days)} snapshot(s) ({shown}): too few for an out-of-time holdout of {holdout_snapshots} "
                "(holdout_snapshots) and a time-CV fold")
    holdout_start = days[-holdout_snapshots]
    train = [d for d in days if d + window <= holdout_start]
    if not train:
        return (f"{len(days)} snapshots ({shown}): no training snapshot's {horizon_days}-day label window closes "
                f"before the holdout {holdout_start}")
    if not any(d + window <= train[-1] for d in train):
        return (f"{len(days)} snapshots ({shown}): the training snapshot(s) {', '.join(map(str, train))} leave no "
                f"time-CV fold (no earlier snapshot's {horizon_days}-day label window closes before {train[-1]})")
    return None


def customer_label(customer_id: pd.Series, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's customer as a code ``0..n-1``, and per customer whether any of its rows is a churner."""
    codes, uniques = pd.factorize(pd.Series(customer_id).reset_index(drop=True), use_na_sentinel=False)
    churned = np.zeros(len(uniques), dtype=np.int8)
    np.maximum.at(churned, codes, np.asarray(y, dtype=np.int8))
    return codes, churned


def stratified_holdout(customer_id: pd.Series, y: np.ndarray, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the training rows and of the holdout rows: a seeded ``share`` of the customers,
    stratified by label (a customer with a churned row counts as a churner), every row of a
    customer (one per snapshot) on the same side."""
    from sklearn.model_selection import train_test_split

    codes, churned = customer_label(customer_id, y)
    _, held = train_test_split(np.arange(len(churned)), test_size=share, stratify=churned, random_state=seed)
    is_held = np.zeros(len(churned), dtype=bool)
    is_held[held] = True
    return np.flatnonzero(~is_held[codes]), np.flatnonzero(is_held[codes])


def stratified_folds(customer_id: pd.Series, y: np.ndarray, n_splits: int,
                     seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified K-fold over the customers (shuffled, seeded), as (training, validation) row
    positions: every row of a customer on the same side, each fold with the churner share of
    the whole. ``n_splits`` is cut to the churners (or non-churners) there are, at least 2."""
    from sklearn.model_selection import StratifiedKFold

    codes, churned = customer_label(customer_id, y)
    n_splits = max(2, min(n_splits, int(churned.sum()), int(len(churned) - churned.sum())))
    out = []
    for _, valid in StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed).split(churned, churned):
        in_valid = np.zeros(len(churned), dtype=bool)
        in_valid[valid] = True
        out.append((np.flatnonzero(~in_valid[codes]), np.flatnonzero(in_valid[codes])))
    return out


def stratified_sample(strata: pd.DataFrame, n: int, seed: int) -> np.ndarray:
    """Sorted positions of about ``n`` rows drawn with the same share from every stratum
    (each distinct row of ``strata``, e.g. snapshot date x label); all rows when ``n`` covers them."""
    if n <= 0 or len(strata) <= n:
        return np.arange(len(strata))
    keys = strata.reset_index(drop=True)
    picked = keys.groupby(list(keys.columns), sort=False, observed=True).sample(frac=n / len(keys), random_state=seed)
    return np.sort(picked.index.to_numpy())


def numeric_text(df: pd.DataFrame, max_blank_share: float = 0.05) -> dict[str, int]:
    """Text columns that are numbers apart from a few blanks (at most ``max_blank_share`` of the
    rows empty or whitespace, every other value a number: ``TotalCharges`` with 11 blanks), with
    their blank counts; :func:`infer_columns` reads them as numbers, the blanks as missing."""
    out = {}
    for c in df.columns:
        if pd.api.types.is_numeric_dtype(df[c]) or pd.api.types.is_bool_dtype(df[c]):
            continue
        text = df[c].astype("string").str.strip()
        blank = text.isna() | (text == "")
        numbers = pd.to_numeric(text.where(~blank), errors="coerce")
        if (~blank).any() and numbers[~blank].notna().all() and blank.sum() <= max_blank_share * len(df):
            out[c] = int(blank.sum())
    return out


def row_number_columns(df: pd.DataFrame) -> list[str]:
    """Columns without a header name (pandas reads them as ``Unnamed: N``) holding the row numbers
    ``0..n-1`` or ``1..n``: the index R's ``write.csv`` or pandas' ``to_csv`` writes, not data."""
    def numbers_rows(values: pd.Series) -> bool:
        return (pd.api.types.is_integer_dtype(values) and len(values) > 0 and values.is_monotonic_increasing
                and values.is_unique and int(values.iloc[0]) in (0, 1)
                and int(values.iloc[-1]) - int(values.iloc[0]) == len(values) - 1)

    return [str(c) for c in df.columns if (str(c) == "" or str(c).startswith("Unnamed: ")) and numbers_rows(df[c])]


def infer_columns(df: pd.DataFrame, max_unique_share: float = 0.5) -> tuple[list[str], list[str], list[str]]:
    """Numeric and categorical feature columns of a table, and the free-text-like columns
    (text with more distinct values than ``max_unique_share`` of the rows) left out. Numbers
    stored as text with a few blanks (:func:`numeric_text`) must be converted first."""
    numeric = [c for c in df.columns if pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])]
    rest = [c for c in df.columns if c not in numeric]
    dropped = [c for c in rest if df[c].nunique() > max_unique_share * len(df)]
    return numeric, [c for c in rest if c not in dropped], dropped


def read_table_file(path: Path) -> pd.DataFrame:
    """A labelled customer table from a CSV (comma-separated, header row) or Parquet file;
    anything else is a one-line :class:`TrainingError` saying what the file is."""
    path = Path(path)
    if path.is_dir():
        raise TrainingError(f"{path} is a directory: pass a CSV or Parquet file")
    if not path.is_file():
        raise TrainingError(f"{path} does not exist: pass the path of a CSV or Parquet file")
    with path.open("rb") as handle:
        head = handle.read(4)
    if path.suffix.lower() in (".parquet", ".pq") or head == b"PAR1":
        try:
            return pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises several types for a damaged file
            raise TrainingError(f"{path} cannot be read as Parquet: {str(exc).splitlines()[0]}") from exc
    try:
        df = pd.read_csv(path)
    except pd.errors.EmptyDataError as exc:
        raise TrainingError(f"{path} is empty: expected a CSV with a header row") from exc
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise TrainingError(f"{path} cannot be read as CSV: {str(exc).splitlines()[0]}") from exc
    if df.empty:
        raise TrainingError(f"{path} has a header but no rows")
    if len(df.columns) == 1:
        raise TrainingError(f"{path} has a single column {df.columns[0][:80]!r}: not a comma-separated table "
                            "(another delimiter, or not a table at all?)")
    return df


def history_table(settings: Settings) -> str:
    """The table whose landed days bound a training run's snapshots: the events when a model
    reads them (the events feature group, or inactivity churn's activity), else the payments,
    else the subscriptions, else the customers (required: their rows, signups and changes, span
    the business's history)."""
    declared = settings.source_table_names
    if "events" in declared and (settings.label_kind == "inactivity" or "events" in settings.feature_group_names):
        return "events"
    return next((t for t in ("payments", "subscriptions") if t in declared), "customers")


def plan_snapshots(settings: Settings, activity_days: list[dt.date], end: dt.date, activity: str,
                   wanted: int | None = None) -> list[dt.date]:
    """The month-start snapshots a training run as of ``end`` uses, from the days its activity
    table (:func:`history_table`) holds: a :class:`TrainingError` names the table, the dates and
    the setting to change when there is no history or no snapshot. Fewer snapshots than an
    out-of-time validation needs (:func:`time_validation_gap`) train with a stratified one inside
    them (:func:`pipeline.model.train.train`), with a warning. When the events bound the
    snapshots of a model whose label does not need them, the warning (or the error) says so."""
    from pipeline.features.labels import training_snapshot_dates

    if settings.label_kind == "provided":
        return _label_dates(settings, end, wanted)
    if not activity_days:
        bound = (f"from history_start {settings.history_start} " if settings.history_start
                 else "(history_start unset: from the earliest row) ")
        where = (f"from {settings.landing_dir / 'events'}/date=DAY/; land event files there" if activity == "events"
                 else f"from the source's {activity}; check ingest_{activity}.sql (sql_dir)")
        raise TrainingError(
            f"nothing to train on: the lake has no {activity} under {storage.lake_root(settings)} and none were ingested "
            f"{bound}before {end} {where}, or set history_start earlier")
    n = wanted or settings.training_snapshots
    try:
        dates = training_snapshot_dates(activity_days[0], end, n, settings.label_window_days)
    except ValueError as exc:
        raise TrainingError(f"training as of {end} on {activity} from {activity_days[0]}: {exc}"
                            + _events_bound(settings, activity, activity_days, [], end, n)) from exc
    _few_snapshots(settings, dates, end, f"the {activity} from {activity_days[0]}",
                   _events_bound(settings, activity, activity_days, dates, end, n))
    return dates


def _events_bound(settings: Settings, activity: str, activity_days: list[dt.date], dates: list[dt.date],
                  end: dt.date, n: int) -> str:
    """When the events' landed history bounds ``dates`` for a label that does not need events
    (any but inactivity) while the business's other history goes back further: what bounds them
    and how to change it (a sentence starting with "; "), else ""."""
    from pipeline.features.labels import training_snapshot_dates
    from pipeline.ingestion import lake

    if activity != "events" or settings.label_kind == "inactivity":
        return ""
    declared = settings.source_table_names
    other, other_days = next(((t, days) for t in ("subscriptions", "payments") if t in declared
                              if (days := lake.partition_dates(settings, t))), (None, []))
    if other is None or other_days[0] >= activity_days[0]:
        return ""
    try:
        longer = training_snapshot_dates(other_days[0], end, n, settings.label_window_days)
    except ValueError:
        return ""
    if longer == dates:
        return ""
    return (f"; the events table bounds them: its landed history starts {activity_days[0]} while {other} go back to "
            f"{other_days[0]} (snapshots {', '.join(map(str, longer))}), and label_kind {settings.label_kind} does "
            f"not need events. To train on the longer history, land the older event files under "
            f"{settings.landing_dir / 'events'}/date=DAY/, or leave the events out: remove events from "
            "feature_groups (the events features) or from source_tables")


def _few_snapshots(settings: Settings, dates: list[dt.date], end: dt.date, source: str, why: str = "") -> None:
    """A :class:`TrainingError` for no snapshot; a warning (and the reason) when ``dates`` are
    too few for an out-of-time validation; else what bounds them (``why``), if anything, logged."""
    if not dates:
        raise TrainingError(
            f"training as of {end} on {source}: no snapshot has a complete {settings.label_window_days}-day label "
            f"window{why}. Train on a later date or with more history")
    gap = time_validation_gap(dates, settings.holdout_snapshots, settings.label_window_days)
    if gap is not None:
        log.warning("training as of %s on %s: %s%s; validation is stratified inside them (a stratified holdout of the "
                    "customers and stratified CV), with no out-of-time validation. For an out-of-time holdout, train "
                    "on a later date or with more history", end, source, gap, why)
    elif why:  # enough for an out-of-time validation: news, not a problem
        log.info("training as of %s on %s: snapshots %s%s", end, source, ", ".join(map(str, dates)), why)


def _label_dates(settings: Settings, end: dt.date, wanted: int | None) -> list[dt.date]:
    """label_kind provided: the snapshots are the label dates of the labels table whose window
    ``[label_date, label_date + horizon_days)`` closed before ``end``, the latest ``wanted``."""
    from pipeline.ingestion import lake

    days = lake.partition_dates(settings, "labels")
    if not days:
        raise TrainingError(
            f"label_kind provided: the lake holds no labels under {storage.lake_root(settings) / 'labels'}; map your labels "
            "(customer_id, label_date, churned) with ingest_labels.sql in sql_dir")
    complete = [d for d in days if d + dt.timedelta(days=settings.horizon_days) <= end]
    dates = complete[-(wanted or settings.training_snapshots):]
    _few_snapshots(settings, dates, end, f"the labels table (label dates {days[0]} .. {days[-1]}, horizon_days "
                                          f"{settings.horizon_days})")
    return dates
