"""The challenger in shadow as pure functions (pipeline.monitoring.challenger) and its nights in the store:
who wins a night, how many in a row, when the promotion_review alert is raised. The nights through the
pipeline's flows (scores in challenger_scores, both models on the same matured labels, the e-mail) are in
tests/test_monitor.py."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from pipeline.monitoring.challenger import ChallengerNight, compare, side_by_side

FIRST = dt.date(2025, 6, 1)


def _matured(seed: int, customers: int = 400) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A matured night: labels, the champion's scores (noise) and the challenger's (informative)."""
    rng = np.random.default_rng(seed)
    label = (rng.random(customers) < 0.2).astype(int)
    ids = [f"c{i}" for i in range(customers)]
    champion = pd.DataFrame({"customer_id": ids, "churn_probability": rng.random(customers), "model_version": "v1",
                             "label": label})
    champion.attrs["scored_on"] = "2025-05-01"
    challenger = pd.DataFrame({"customer_id": ids[::-1],  # another order: matched by customer
                               "churn_probability": np.clip(0.5 * label[::-1] + 0.5 * rng.random(customers), 0, 1),
                               "model_version": "v2"})
    return champion, challenger


def _night(settings, k: int, rows: pd.DataFrame | None, needed: int) -> ChallengerNight:
    from pipeline.monitoring.store import challenger_nights_before

    day = FIRST + dt.timedelta(days=k)
    before = challenger_nights_before(settings, day, max(needed, 1) - (rows is not None))
    nights = side_by_side(pd.concat([before, rows], ignore_index=True) if rows is not None else before)
    return ChallengerNight(day.isoformat(), "v1", "v2", "test", needed, 0.0, rows, nights)


def test_both_models_are_judged_on_the_same_customers_and_the_better_one_wins():
    champion, challenger = _matured(0)
    rows = compare(FIRST, champion, challenger.iloc[:300], 0.5, 0.4, margin=0.02, min_positives=5)
    assert list(rows["role"]) == ["champion", "challenger"] and list(rows["rows"]) == [300, 300]
    assert rows["positives"].nunique() == 1 and list(rows["model_version"]) == ["v1", "v2"]
    assert list(rows["threshold"]) == [0.5, 0.4] and rows["scored_on"].eq("2025-05-01").all()
    champ, chall = rows.iloc[0], rows.iloc[1]
    assert abs(champ["roc_auc"] - 0.5) < 0.1 and chall["roc_auc"] > 0.9 and chall["beats_champion"] is True
    # too few churners to trust, or a margin it does not clear: no win
    assert not compare(FIRST, champion, challenger, 0.5, 0.5, margin=0.02, min_positives=10_000)["beats_champion"].iloc[1]
    assert not compare(FIRST, champion, challenger, 0.5, 0.5, margin=0.9, min_positives=5)["beats_champion"].iloc[1]
    # the champion's better: the challenger does not win
    swapped = challenger.assign(churn_probability=1 - challenger["churn_probability"])
    assert not compare(FIRST, champion, swapped, 0.5, 0.5, margin=0.0, min_positives=5)["beats_champion"].iloc[1]


def test_promotion_review_needs_the_same_challenger_to_win_the_last_n_nights_in_a_row(settings):
    from pipeline.monitoring.alerts import _promotion_review
    from pipeline.results import CHALLENGER_PERFORMANCE, replace_rows
    from pipeline.results import night as key

    champion, challenger = _matured(1)
    noise = challenger.assign(churn_probability=np.random.default_rng(5).random(len(challenger)))
    won = [True, False, True, True, True]
    reviews, streaks = [], []
    for k, wins in enumerate(won):
        rows = compare(FIRST + dt.timedelta(days=k), champion, challenger if wins else noise.assign(
            churn_probability=1 - challenger["churn_probability"]), 0.5, 0.5, margin=0.0, min_positives=5)
        night = _night(settings, k, rows, needed=3)
        replace_rows(settings, CHALLENGER_PERFORMANCE, rows, "run_date", key(night.run_date))
        reviews.append(night.review)
        streaks.append(night.streak)
    assert streaks == [1, 0, 1, 2, 3] and reviews == [False, False, False, False, True]
    assert len(night.nights) == 3 and night.to_dict()["tonight"]["beats_champion"] is True
    # tonight nothing matured: no review, whatever the nights before
    quiet = _night(settings, 5, None, needed=3)
    assert not quiet.review and quiet.streak == 0 and len(quiet.nights) == 3
    # another challenger version wins tonight: its streak starts afresh
    other = compare(FIRST + dt.timedelta(days=5), champion, challenger.assign(model_version="v3"), 0.5, 0.5,
                    margin=0.0, min_positives=5)
    assert _night(settings, 5, other, needed=3).streak == 1
    alerts = _promotion_review(settings, type("M", (), {"challenger": night})())  # the rule reads m.challenger only
    assert len(alerts) == 1 and alerts[0].severity == "warning" and alerts[0].group == "v2"
    assert "python -m pipeline models promote v2" in alerts[0].message and "3 nights" in alerts[0].message
    assert alerts[0].value > alerts[0].threshold
    assert not _promotion_review(settings, type("M", (), {"challenger": quiet})())


def test_the_challenger_is_a_setting(monkeypatch):
    from pipeline.config import load_settings

    monkeypatch.setenv("CHURNFLOW_CHALLENGER_VERSION", "v3")
    assert load_settings().challenger_version == "v3"
    monkeypatch.setenv("CHURNFLOW_CHALLENGER_VERSION", "three")
    with pytest.raises(ValueError, match="challenger_version"):
        load_settings()
    monkeypatch.delenv("CHURNFLOW_CHALLENGER_VERSION")
    assert load_settings().challenger_min_nights == 7
    with pytest.raises(ValueError, match="challenger_min_nights"):
        load_settings(challenger_min_nights=-1)


def test_challenger_min_nights_zero_switches_it_off_and_says_so(settings):
    from pipeline.model.serving import challenger_number

    assert challenger_number(settings.replace(challenger_min_nights=0), 1) == (
        None, "challenger_min_nights is 0: no challenger is scored")
