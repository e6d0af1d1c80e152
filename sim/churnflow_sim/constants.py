"""The generated subscription business's parameters (:mod:`churnflow_sim.generate`).

Population shares, the satisfaction walk, the weights of the churn hazard and the rates of the
observable behaviour (:mod:`churnflow_sim.behaviour` and :mod:`churnflow_sim.tables` describe the
mechanism they drive), plus the contract's category codes, prices and tables, and how a category
weighting reads (:func:`probs`, :func:`code`).
"""

from __future__ import annotations

import numpy as np

from churnflow_sim.common import (
    CANCEL_REASONS,
    CHANNELS,
    GENDERS,
    PAYMENT_METHODS,
    PLAN_FEES,
    PLANS,
    REGIONS,
    TICKET_CATEGORIES,
    US_PER_DAY,
    US_PER_S,
)
from pipeline.ingestion.contract import PAYMENT_STATUSES, SOURCE_TABLES

NEVER = np.iinfo(np.int64).max  # "no such instant" (not cancelled, not resolved, ...)

# --- population ------------------------------------------------------------------------
BASE_SHARE = 0.6  # share of customers already subscribed at ``start``
BASE_MAX_TENURE_DAYS = 3 * 365
BASE_TENURE_SCALE_DAYS = 540.0  # recent sign-ups are more common among survivors
PAYMENT_DELAY_MAX_US = 300 * US_PER_S  # a payment lands up to 5 min after billing
SIGNUP_TOD_MAX_US = US_PER_DAY - PAYMENT_DELAY_MAX_US  # keeps payments on the billing day
GENDER_P = {"F": 0.49, "M": 0.48, "X": 0.03}
REGION_P = {"north": 0.20, "south": 0.22, "east": 0.18, "west": 0.20, "central": 0.20}
CHANNEL_P = {"organic": 0.35, "paid_search": 0.22, "social": 0.15, "referral": 0.14, "partner": 0.14}
PLAN_P = {"basic": 0.45, "standard": 0.38, "premium": 0.17}
METHOD_P = {"card": 0.62, "paypal": 0.25, "bank_transfer": 0.13}
AGE_MEAN, AGE_SD = 38.0, 12.0
TIKTOK_AGE_MEAN, TIKTOK_AGE_SD = 25.0, 5.0
AGE_MIN, AGE_MAX = 18, 80
TIKTOK_SHARE = 0.25  # of the sign-ups from the drift date
PRICE_RISE = 1.2
ACTIVITY_LOG_SD = 0.5  # personal activity level: log-normal with mean 1
#: concept drift: a competitor's offer for the basic plan multiplies its customers' hazard
CONCEPT_SEGMENT_PLAN, CONCEPT_HAZARD_FACTOR = "basic", 3.0

# --- satisfaction ------------------------------------------------------------------------
S_MEAN, S_SD = 0.4, 1.0
S_TENURE_BONUS = 0.3  # long-standing customers are the satisfied survivors
S_REVERSION = 0.2
V_MOMENTUM, V_NOISE_SD = 0.5, 0.15  # the noise has mean E[shock]: no drift overall
SHOCK_P, SHOCK_MEAN, SHOCK_SHAPE = 0.06, 0.9, 4.0  # shock ~ Gamma(4, mean 0.9)
S_RANGE = 4.0  # satisfaction stays within S_MEAN +- 4

# --- churn hazard: log of the daily cancellation probability, from observable history ---------
LOG_BASE_HAZARD = -7.1
MAX_DAILY_HAZARD = 0.05
USAGE_WINDOWS = (30, 90)  # days: the recent usage rate and the baseline it is compared with
RATE_PRIOR_DAYS = 7.0  # a usage rate over few days is shrunk towards EVENTS_PER_DAY
W_USAGE = -1.0  # x log(30-day usage rate / EVENTS_PER_DAY)
W_USAGE_DROP = -2.5  # x log(30-day rate / 90-day rate): customers disengage before they leave
FAILED_PAYMENT_DAYS, W_FAILED_PAYMENT = 180, 0.7  # per failed payment (at most 3 count)
TICKET_DAYS, W_TICKET = 90, 0.4  # per ticket (at most 3 count)
DOWNGRADE_DAYS, W_DOWNGRADE = 90, 0.6  # a downgrade in the window
W_NEW_CUSTOMER, NEW_CUSTOMER_DAYS = 0.8, 90.0  # x exp(-tenure / 90 days)
W_PRICE = 2.0  # x log(fee / list fee of the plan)
W_YOUTH, YOUTH_PIVOT, YOUTH_CLIP = 0.02, 35, (-15, 20)  # x clip(35 - age)
CHANNEL_EFFECT = {
    "organic": -0.2,
    "paid_search": 0.2,
    "social": 0.35,
    "referral": -0.3,
    "partner": 0.0,
    "tiktok": 0.7,
}

# --- observable behaviour ------------------------------------------------------------------
METHOD_FAIL_P = {"card": 0.03, "paypal": 0.02, "bank_transfer": 0.07}
FAIL_SLOPE, MAX_FAIL_P = -0.5, 0.5
REFUND_P = 0.004
UPGRADE_P, UPGRADE_SLOPE = 0.012, 0.5
DOWNGRADE_P, DOWNGRADE_SLOPE = 0.010, -0.6
TICKETS_PER_MONTH, TICKET_SLOPE, TICKET_FAILED_BOOST = 0.06, -0.6, 2.0
MAX_TICKETS_PER_MONTH = 2.0
CANCEL_TICKET_SLOPE = -0.8  # dissatisfied customers open more "cancellation" tickets
TICKET_CATEGORY_W = {"billing": 0.25, "technical": 0.3, "content": 0.2, "account": 0.15, "cancellation": 0.1}
TICKET_RESOLVE_MEDIAN_H, TICKET_RESOLVE_LOG_SD = 16.0, 1.0
EVENTS_PER_DAY = 0.4  # average customer at mean satisfaction (population mean ~0.55)
ENGAGEMENT_SLOPE = 0.9
DURATION_SLOPE = 0.15
WEEKDAY_FACTOR = np.array([0.93, 0.93, 0.93, 0.95, 1.0, 1.13, 1.13])  # Monday .. Sunday
EVENT_TYPE_P = {"login": 0.5, "session": 0.32, "content": 0.18}
DURATION_MEDIAN_S = {"session": 420.0, "content": 1500.0}
DURATION_LOG_SD = 0.8
CONTENT_UNITS_EXTRA = 1.2  # a content event has 1 + Poisson(1.2) units

CATEGORIES: dict[str, tuple[str, ...]] = {
    "gender": GENDERS,
    "region": REGIONS,
    "acquisition_channel": CHANNELS,
    "plan": PLANS,
    "old_plan": PLANS,
    "new_plan": PLANS,
    "payment_method": PAYMENT_METHODS,
    "status": PAYMENT_STATUSES,
    "category": TICKET_CATEGORIES,
    "reason": CANCEL_REASONS,
}
#: fee per (price raised?, plan code)
PRICES = np.round(np.array([[PLAN_FEES[p] for p in PLANS]]) * np.array([[1.0], [PRICE_RISE]]), 2)
NULLABLE = {("support_tickets", "resolved_at")}
#: the contract's tables this generator writes (labels: only a business that supplies its own)
TABLES = tuple(n for n in SOURCE_TABLES if n != "labels")
#: optional contract columns the generated subscription business does not have
NOT_GENERATED = frozenset({"end_date", "auto_renew",
                           "name", "email", "phone"})  # contact fields: a real business maps its own in


def probs(weights: dict[str, float], names: tuple[str, ...]) -> np.ndarray:
    """Probabilities over ``names`` (in contract order) from a name -> weight mapping."""
    p = np.array([weights.get(name, 0.0) for name in names], dtype=float)
    return p / p.sum()


def code(names: tuple[str, ...], name: str) -> int:
    """The internal code of category ``name``: its index in ``names``."""
    return names.index(name)
