"""Why a customer is at risk: each score's feature contributions (SHAP values on the model's
log-odds), grouped back to the catalogue's features (a one-hot column counts for its
category feature), and the top reasons written as an analyst reads them.

* XGBoost: its own exact TreeSHAP (``pred_contribs``) for the customers at risk, its path
  attribution (``approx_contribs``) for the others (1M customers: ~20 s exact, ~3 s fast).
* Logistic regression: the exact linear SHAP value ``coef * (x - mean)`` of each column, the
  mean over the model's training reference (independent features).
* scikit-learn's histogram gradient boosting (log-odds: its raw prediction) and random forest
  (probability: the mean over its trees): the path attribution XGBoost's ``approx_contribs``
  computes (Saabas), from their own trees (:func:`tree_contributions`); contributions + bias =
  the raw prediction exactly. Measured on 2 cores, 1M rows x 45 features, models fitted on 250k
  rows: HGB defaults (95 trees) 12 s (its predict_proba: 8 s; one prediction per feature: ~184 s);
  the forest of ``build_pipeline`` (200 trees, 1.1M leaves) 54 s (predict_proba: 30 s; one
  prediction per feature: ~26 min); its per-leaf tables take 1.1M x 45 x 8 bytes = 0.4 GB meanwhile.
* Any other model: the change in its probability when the feature is set to its typical
  value (the reference's median or most frequent value): one prediction per feature.

Calibration is monotone, so it never changes which features push a score up: the
contributions are those of the fitted model inside the calibrator.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from pipeline.features.catalogue import value_unit

#: the reasons kept per customer
N_REASONS = 3
#: rows explained at a time (bounds the contribution matrix's memory)
CHUNK_ROWS = 100_000
REASON_COLUMNS = [f"reason_{i}" for i in range(1, N_REASONS + 1)]


def inner_pipeline(model: Any) -> Any:
    """The fitted preprocessing + classifier pipeline inside a calibrated model."""
    est = model
    if hasattr(est, "calibrated_classifiers_"):
        est = est.calibrated_classifiers_[0].estimator
    if hasattr(est, "estimator") and not hasattr(est, "named_steps"):  # sklearn's FrozenEstimator
        est = est.estimator
    if not hasattr(est, "named_steps"):
        raise TypeError(f"cannot explain a {type(model).__name__}: expected a pipeline with 'prep' and 'model' steps")
    return est


def column_owners(prep: Any, numeric: list[str], categorical: list[str]) -> np.ndarray:
    """For each column the preprocessing outputs, the raw feature it comes from. A branch
    without columns outputs none (a business with no categorical feature has an empty ``cat``
    branch whose encoder was never fitted)."""
    owners: list[str] = []
    for name, transformer, columns in prep.transformers_:
        if len(columns) == 0 or (isinstance(transformer, str) and transformer == "drop"):
            continue
        if name == "num" or (name == "cat" and "onehot" not in transformer.named_steps):  # (ordinal codes: one each)
            owners += list(columns)
        elif name == "cat":
            onehot = transformer.named_steps["onehot"]
            for column, cats in zip(columns, onehot.categories_, strict=True):
                owners += [column] * len(cats)
    return np.asarray(owners, dtype=object)


def contributions(model: Any, X: pd.DataFrame, reference: pd.DataFrame, numeric: list[str],
                  categorical: list[str], exact: np.ndarray | None = None) -> pd.DataFrame:
    """Per row of ``X`` and raw feature, its contribution to the score (log-odds for XGBoost,
    logistic regression and histogram gradient boosting, probability for the random forest and the
    fallback); positive pushes towards churn.

    ``exact``: the rows that get XGBoost's exact TreeSHAP (default all); the others get its
    path attribution (``approx_contribs``, Saabas), about six times faster: a night computes the
    exact values for the customers at risk and the fast ones for the rest."""
    pipe = inner_pipeline(model)
    prep, clf = pipe.named_steps["prep"], pipe.named_steps["model"]
    features = numeric + categorical
    owners = column_owners(prep, numeric, categorical)
    kind = type(clf).__name__
    if kind in ("XGBClassifier", "LogisticRegression"):
        transformed = prep.transform(X[features])
        if kind == "XGBClassifier":
            import xgboost as xgb

            booster = clf.get_booster()
            exact_rows = np.ones(len(X), dtype=bool) if exact is None else np.asarray(exact, dtype=bool)
            values = np.zeros((len(X), transformed.shape[1]), dtype="float32")
            for rows, approx in ((exact_rows, False), (~exact_rows, True)):
                if rows.any():
                    values[rows] = booster.predict(xgb.DMatrix(transformed[rows]), pred_contribs=True,
                                                   approx_contribs=approx)[:, :-1]
        else:
            mean = prep.transform(reference[features]).mean(axis=0)
            values = (transformed - mean) * clf.coef_[0]
        return grouped_by_owner(values, owners, features)
    if kind in TREE_MODELS:
        # the paths' columns summed per feature in each leaf's table (what grouped_by_owner sums)
        position = {feature: i for i, feature in enumerate(features)}
        values, _ = tree_contributions(clf, prep.transform(X[features]),
                                       np.array([position[str(o)] for o in owners], dtype=np.intp), len(features))
        return pd.DataFrame(values, index=pd.RangeIndex(len(values)), columns=features)
    base = model.predict_proba(X[features])[:, 1]
    typical = typical_values(reference, numeric, categorical)
    out = {}
    for column in features:
        swapped = X[features].copy()
        swapped[column] = typical[column]
        out[column] = base - model.predict_proba(swapped)[:, 1]
    return pd.DataFrame(out, index=X.index)


#: the tree ensembles explained by their own paths (:func:`tree_contributions`)
TREE_MODELS = ("HistGradientBoostingClassifier", "RandomForestClassifier")
#: rows routed through every tree at a time (bounds the leaf-index matrix: rows x trees)
TREE_BLOCK_ROWS = 50_000


def tree_contributions(clf: Any, transformed: np.ndarray, groups: np.ndarray | None = None,
                       n_groups: int | None = None) -> tuple[np.ndarray, float]:
    """Saabas path attribution of a fitted ``HistGradientBoostingClassifier`` (log-odds: its raw
    prediction) or ``RandomForestClassifier`` (churn probability: the mean over its trees) on the
    preprocessed rows ``transformed``: per row and column, the change in the expected value of the
    nodes along the row's path where a split on that column sends it (what XGBoost's
    ``approx_contribs`` computes). A node's expected value is the training-count-weighted mean of
    its leaves. Returns the (rows x columns) contributions and the bias: each row's contributions
    plus the bias are its raw prediction. ``groups``: the output column of each column (default
    its own; ``n_groups`` of them), a column's contributions summed into its group's. Each tree's
    (leaves x groups) table is built once; each row's leaf comes from the model's own routing,
    then its row of each table is added."""
    n_columns = transformed.shape[1]
    if groups is None:
        groups, n_groups = np.arange(n_columns), n_columns
    n_out = int(n_groups if n_groups is not None else groups.max(initial=-1) + 1)
    hgb = type(clf).__name__ == "HistGradientBoostingClassifier"
    tables, bias, leaves_of = _hgb_tables(clf, groups, n_out) if hgb else _forest_tables(clf, groups, n_out)
    out = np.zeros((transformed.shape[0], n_out))
    for start in range(0, transformed.shape[0], TREE_BLOCK_ROWS):
        leaves = leaves_of(transformed[start:start + TREE_BLOCK_ROWS])  # (rows x trees): rows of each tree's table
        block = out[start:start + len(leaves)]
        for k, table in enumerate(tables):  # (a gather per tree: measured faster than one sparse product)
            block += table[leaves[:, k]]
    return out, bias


def path_table(left: np.ndarray, right: np.ndarray, is_leaf: np.ndarray, feature: np.ndarray,
               leaf_value: np.ndarray, count: np.ndarray, n_columns: int) -> tuple[np.ndarray, np.ndarray, float]:
    """One tree's Saabas table: its leaves (node ids), each leaf's (columns) path contributions, and
    the root's expected value (the count-weighted mean of the leaves), so that a leaf's row plus
    the root's value is the leaf's value. Nodes by arrays (``left``/``right``: children ids of an
    inner node, ``feature``: its split column, ``leaf_value``/``count``: read at leaves), processed
    level by level."""
    levels = []
    frontier = np.zeros(1, dtype=np.intp)
    while frontier.size:
        levels.append(frontier)
        inner = frontier[~is_leaf[frontier]]
        frontier = np.concatenate([left[inner], right[inner]]).astype(np.intp)
    weight = np.where(is_leaf, count, 0).astype("float64")
    expected = np.where(is_leaf, leaf_value, 0.0).astype("float64")
    for nodes in reversed(levels):
        inner = nodes[~is_leaf[nodes]]
        lo, hi = left[inner], right[inner]
        weight[inner] = weight[lo] + weight[hi]
        mean = (expected[lo] + expected[hi]) / 2  # (a node without training rows: its children's mean)
        expected[inner] = np.divide(weight[lo] * expected[lo] + weight[hi] * expected[hi], weight[inner],
                                    out=mean, where=weight[inner] > 0)
    path = np.zeros((len(left), n_columns))
    for nodes in levels:
        inner = nodes[~is_leaf[nodes]]
        for child in (left[inner], right[inner]):
            path[child] = path[inner]
            path[child, feature[inner]] += expected[child] - expected[inner]
    leaves = np.flatnonzero(is_leaf)
    return leaves, path[leaves], float(expected[0])


def _table_rows(n_nodes: int, leaves: np.ndarray) -> np.ndarray:
    """Per node of a tree, its row in the tree's table (:func:`path_table`): a leaf's position
    among ``leaves``, -1 for an inner node."""
    rows = np.full(n_nodes, -1, dtype=np.int64)
    rows[leaves] = np.arange(len(leaves))
    return rows


def _forest_tables(forest: Any, groups: np.ndarray, n_out: int) -> tuple[list[np.ndarray], float, Any]:
    """A random forest's tables (probability of the positive class, divided by the number of trees:
    the forest averages them), its bias, and the routing of rows to table rows (``forest.apply``)."""
    trees = forest.estimators_
    tables, bias, lookups = [], 0.0, []
    for est in trees:
        t = est.tree_
        value = t.value[:, 0, :]
        is_leaf = t.children_left < 0
        leaves, table, root = path_table(t.children_left, t.children_right, is_leaf, groups[t.feature],
                                         value[:, 1] / value.sum(axis=1), t.n_node_samples, n_out)
        tables.append(table / len(trees))
        bias += root / len(trees)
        lookups.append(_table_rows(t.node_count, leaves))
    starts = np.cumsum([0] + [len(lk) for lk in lookups[:-1]])
    every = np.concatenate(lookups) if lookups else np.zeros(0, dtype=np.int64)

    def leaves_of(X: np.ndarray) -> np.ndarray:
        return every[forest.apply(X) + starts]

    return tables, bias, leaves_of


def _hgb_tables(hgb: Any, groups: np.ndarray, n_out: int) -> tuple[list[np.ndarray], float, Any]:
    """A histogram gradient boosting's tables (its raw prediction: log-odds), its bias (baseline +
    each tree's root value), and the routing of rows to table rows: each tree's own ``predict`` (as
    ``_raw_predict`` calls it: numeric thresholds, missing values, category bitsets) on a copy of
    its nodes whose value is the node's id. Columns as the pipeline's ``prep`` outputs them (the
    model's own preprocessing puts the categorical ones first: mapped back)."""
    from sklearn.utils._openmp_helpers import _openmp_effective_n_threads

    if hgb.n_trees_per_iteration_ != 1:
        raise TypeError(f"cannot explain a {hgb.n_trees_per_iteration_}-class histogram gradient boosting: expected two")
    group_of = groups[_hgb_input_columns(hgb, hgb.n_features_in_)]
    tables, routers = [], []
    bias = float(np.ravel(hgb._baseline_prediction)[0])
    for (predictor,) in hgb._predictors:
        nodes = predictor.nodes
        is_leaf = nodes["is_leaf"].astype(bool)
        leaves, table, root = path_table(nodes["left"].astype(np.intp), nodes["right"].astype(np.intp), is_leaf,
                                         group_of[nodes["feature_idx"]], nodes["value"], nodes["count"], n_out)
        tables.append(table)
        bias += root
        router = type(predictor)(nodes.copy(), predictor.binned_left_cat_bitsets, predictor.raw_left_cat_bitsets)
        router.nodes["value"] = _table_rows(len(nodes), leaves)  # a leaf's "prediction": its row in the table
        routers.append(router)
    known_cat_bitsets, f_idx_map = hgb._bin_mapper.make_known_categories_bitsets()

    def leaves_of(X: np.ndarray) -> np.ndarray:
        raw = hgb._preprocess_X(X, reset=False)
        n_threads = _openmp_effective_n_threads()
        out = np.empty((raw.shape[0], len(routers)), dtype=np.int64)
        for k, router in enumerate(routers):
            out[:, k] = router.predict(raw, known_cat_bitsets=known_cat_bitsets, f_idx_map=f_idx_map,
                                       n_threads=n_threads)
        return out

    return tables, bias, leaves_of


def _hgb_input_columns(hgb: Any, n_columns: int) -> np.ndarray:
    """For each column a histogram gradient boosting's trees split on, the input column it is
    (with categorical features, its own encoder puts them first)."""
    pre = hgb._preprocessor
    if pre is None:
        return np.arange(n_columns)
    out = np.arange(n_columns)
    for name, _, columns in pre.transformers_:
        where = pre.output_indices_.get(name, slice(0, 0))
        picked = np.arange(n_columns)[columns] if not isinstance(columns, str) else np.zeros(0, dtype=np.intp)
        if where.stop > where.start:
            out[where] = picked
    return out


def grouped_by_owner(values: np.ndarray, owners: np.ndarray, features: list[str]) -> pd.DataFrame:
    """The contributions of the preprocessed columns (``values``, one column per ``owners``
    entry) summed per raw feature, in ``features`` order (0 for a feature without columns).
    A feature with one column takes it as it is; those with several (one-hot) are summed as
    pandas sums a group, so the values are those of one groupby over every column, at a
    fraction of its cost (a night: 592k rows x 54 columns). Rows indexed from 0."""
    positions: dict[str, list[int]] = {}
    for i, owner in enumerate(owners):
        positions.setdefault(str(owner), []).append(i)
    several = [i for cols in positions.values() if len(cols) > 1 for i in cols]
    summed = (pd.DataFrame(values[:, several], columns=owners[several]).T.groupby(level=0, sort=False).sum().T
              if several else pd.DataFrame(index=range(len(values))))
    out = {}
    for feature in features:
        cols = positions.get(feature, [])
        if len(cols) == 1:
            out[feature] = values[:, cols[0]]
        elif cols:
            out[feature] = summed[feature].to_numpy()
        else:
            out[feature] = np.zeros(len(values))  # float64, as a column the groupby lacked
    return pd.DataFrame(out, index=pd.RangeIndex(len(values)), columns=features)


def mean_abs_contributions(model: Any, X: pd.DataFrame, reference: pd.DataFrame, numeric: list[str],
                           categorical: list[str]) -> pd.Series:
    """Each feature's mean |contribution| over the rows of ``X`` (exact SHAP values for XGBoost and
    logistic regression: :func:`contributions`), in chunks; the features in catalogue order."""
    total = pd.Series(0.0, index=numeric + categorical)
    for start in range(0, len(X), CHUNK_ROWS):
        total += contributions(model, X.iloc[start:start + CHUNK_ROWS], reference, numeric, categorical).abs().sum()
    return total / max(len(X), 1)


def typical_values(reference: pd.DataFrame, numeric: list[str], categorical: list[str]) -> dict[str, Any]:
    """What is usual for each feature in the model's training reference: the median of a
    number, the most frequent value of a category."""
    out: dict[str, Any] = {c: float(reference[c].median()) for c in numeric if c in reference}
    for c in categorical:
        if c in reference and reference[c].notna().any():
            out[c] = reference[c].mode(dropna=True).iloc[0]
    return out


def label(feature: str) -> str:
    """A feature name as words, the catalogue's (:func:`pipeline.features.catalogue.human_label`):
    ``n_logins_30d`` -> "logins in the last 30 days"."""
    from pipeline.features.catalogue import human_label

    return human_label(feature)


def _value(feature: str, value: Any, unit: str | None = None) -> str:
    """``value`` of ``feature`` as an analyst reads it; ``unit``: the feature's :func:`value_unit`
    (looked up when not given)."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "missing"
    if isinstance(value, (int, float, np.integer, np.floating)):
        number = float(value)
        if feature.endswith(("_flag", "_missing")) or feature == "auto_renew":
            return "yes" if number >= 0.5 else "no"
        unit = value_unit(feature) if unit is None else unit
        if unit == "seconds":
            return f"{number / 60:,.0f} min" if abs(number) < 5400 else f"{number / 3600:,.1f} h"
        if unit == "percent":
            return f"{number:+,.0f}%"
        return f"{number:,.0f}" if number.is_integer() or abs(number) >= 100 else f"{number:,.2f}"
    return str(value)


def reasons(contrib: pd.DataFrame, X: pd.DataFrame, typical: dict[str, Any], n: int = N_REASONS) -> pd.DataFrame:
    """The ``n`` features that push each score up the most, as "what: value (usually typical)";
    fewer (None) when fewer features push it up. Built per feature over the rows it explains
    (1M customers' reasons take seconds, not minutes)."""
    values = contrib.to_numpy(dtype="float64")
    names = list(contrib.columns)
    units = [value_unit(name) for name in names]
    objects: dict[int, np.ndarray] = {}  # a non-numeric column as Python objects, converted once
    heads = [f"{label(name)}: " for name in names]
    tails = [f" (usually {_value(name, typical[name])})" if typical.get(name) is not None else "" for name in names]
    order = np.argsort(-values, axis=1)[:, :n]
    every = np.arange(len(values))
    out = {}
    for k in range(n):
        text = np.full(len(values), None, dtype=object)
        if k < order.shape[1]:
            picked = order[:, k]
            pushes = values[every, picked] > 0
            for j in np.unique(picked[pushes]):
                rows = np.flatnonzero(pushes & (picked == j))
                column = X[names[j]]
                if isinstance(column.dtype, np.dtype) and column.dtype.kind in "fiu":
                    text[rows] = _number_texts(names[j], column.to_numpy()[rows], heads[j], tails[j], units[j])
                else:
                    if j not in objects:
                        objects[j] = column.to_numpy(dtype=object)
                    text[rows] = _object_texts(names[j], objects[j][rows], heads[j], tails[j], units[j])
        out[f"reason_{k + 1}"] = text
    return pd.DataFrame(out, index=X.index)


def _number_texts(name: str, values: np.ndarray, head: str, tail: str, unit: str) -> np.ndarray:
    """``head + value + tail`` for numeric ``values`` (a NumPy column of feature ``name``), each
    distinct value (NaN once) written once (:func:`_value`, on the Python number, as one per row
    did): a night's million reasons repeat a few thousand values."""
    distinct, inverse = np.unique(values, return_inverse=True)
    words = np.array([head + _value(name, v, unit) + tail for v in distinct.tolist()], dtype=object)
    out = words[inverse.reshape(-1)]
    if values.dtype.kind == "f":  # 0.0 and -0.0 are one value to np.unique, not to a format ("+0%", "-0%")
        zero = values == 0
        for sign, rows in ((0.0, zero & ~np.signbit(values)), (-0.0, zero & np.signbit(values))):
            out[rows] = head + _value(name, sign, unit) + tail
    return out


def _object_texts(name: str, values: np.ndarray, head: str, tail: str, unit: str) -> np.ndarray:
    """:func:`_number_texts` for Python objects (text, nullable numbers), each equal value written once."""
    memo: dict[Any, str] = {}
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        try:
            out[i] = memo[v]
        except KeyError:
            out[i] = memo[v] = head + _value(name, v, unit) + tail
        except TypeError:  # an unhashable value: written as it is
            out[i] = head + _value(name, v, unit) + tail
    return out


def explain(model: Any, X: pd.DataFrame, reference: pd.DataFrame, numeric: list[str], categorical: list[str],
            n: int = N_REASONS, exact: np.ndarray | None = None) -> pd.DataFrame:
    """The top ``n`` reasons of every row of ``X`` (columns ``reason_1`` ..), in chunks;
    ``exact``: see :func:`contributions`."""
    typical = typical_values(reference, numeric, categorical)
    exact_rows = np.ones(len(X), dtype=bool) if exact is None else np.asarray(exact, dtype=bool)
    parts = []
    for start in range(0, len(X), CHUNK_ROWS):
        chunk = X.iloc[start:start + CHUNK_ROWS]
        contrib = contributions(model, chunk, reference, numeric, categorical, exact_rows[start:start + CHUNK_ROWS])
        parts.append(reasons(contrib, chunk[numeric + categorical], typical, n))
    if not parts:
        return pd.DataFrame({f"reason_{k + 1}": pd.Series([], dtype=object) for k in range(n)})
    return pd.concat(parts)
