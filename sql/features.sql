-- Point-in-time feature rows: one per population row (customer_id, as_of), in the
-- order of the catalogue pipeline.features.FEATURES (a test keeps the two in lockstep).
--
-- Runs after the temp tables f_events, f_payments (payments and purchases), f_plan_changes,
-- f_support and f_subscription (sql/features_<group>.sql) are materialised. The window_columns
-- placeholder is generated from identifiers only: per metric and window
--     coalesce(e.n_logins_7d, 0) AS n_logins_7d
-- then per shorter window the engagement trend against the longest window W,
--     trend_ratio(e.n_events_7d, $window_1, e.n_events_90d, $window_3) AS trend_events_7d_vs_90d
-- and (coalesce(e.n_events_<W>d, 0) = 0)::TINYINT AS no_events_<W>d_flag.
-- No numeric column is ever NULL: missing aggregates are 0, missing look-ups use the
-- documented sentinel plus a *_missing flag.
SELECT
    p.customer_id,
    p.as_of,
    -- demographic
    coalesce(year(p.as_of) - p.birth_year, 0)::INTEGER AS age,
    (p.birth_year IS NULL)::TINYINT AS age_missing,
    coalesce(p.gender, 'unknown') AS gender,
    coalesce(p.region, 'unknown') AS region,
    coalesce(p.acquisition_channel, 'unknown') AS acquisition_channel,
    -- subscription at as_of
    coalesce(s.plan, 'none') AS plan,
    coalesce(s.monthly_fee, 0.0) AS monthly_fee,
    coalesce(s.payment_method, 'none') AS payment_method,
    p.tenure_days,
    -- behavioural windows and engagement trend
    {window_columns},
    -- recency (sentinel when nothing in the look-back: min(tenure, look-back))
    coalesce(p.as_of - e.last_login_day, least(p.tenure_days, $max_window)) AS days_since_last_login,
    (e.last_login_day IS NULL)::TINYINT AS days_since_last_login_missing,
    coalesce(
        p.as_of - pay.last_success_payment_day, least(p.tenure_days, $payment_lookback_days)
    ) AS days_since_last_success_payment,
    (pay.last_success_payment_day IS NULL)::TINYINT AS days_since_last_success_payment_missing,
    -- transactions
    coalesce(pay.n_failed_payments, 0) AS n_failed_payments_180d,
    coalesce(pc.n_plan_changes, 0) AS n_plan_changes_365d,
    coalesce(pc.downgraded, FALSE)::TINYINT AS downgrade_90d_flag,
    CASE
        WHEN s.monthly_fee IS NULL OR coalesce(s.monthly_fee_before, 0) = 0 THEN 0.0
        ELSE 100.0 * (s.monthly_fee - s.monthly_fee_before) / s.monthly_fee_before
    END AS billing_change_pct_90d,
    -- support
    coalesce(t.n_tickets, 0) AS n_tickets_90d,
    coalesce(t.n_open_tickets, 0) AS n_open_tickets,
    -- purchases (RFM: frequency and monetary value; recency is days_since_last_success_payment)
    coalesce(pay.n_purchases_30d, 0) AS n_purchases_30d,
    coalesce(pay.n_purchases_90d, 0) AS n_purchases_90d,
    coalesce(pay.n_purchases_180d, 0) AS n_purchases_180d,
    coalesce(pay.n_purchases_365d, 0) AS n_purchases_365d,
    coalesce(pay.spend_cents_30d, 0) / 100.0 AS total_spend_30d,
    coalesce(pay.spend_cents_90d, 0) / 100.0 AS total_spend_90d,
    coalesce(pay.spend_cents_180d, 0) / 100.0 AS total_spend_180d,
    coalesce(pay.spend_cents_365d, 0) / 100.0 AS total_spend_365d,
    CASE WHEN coalesce(pay.n_purchases_365d, 0) = 0 THEN 0.0
         ELSE pay.spend_cents_365d / 100.0 / pay.n_purchases_365d END AS avg_order_value_365d,
    CASE WHEN coalesce(pay.n_purchases_90d, 0) = 0 OR coalesce(pay.n_purchases_365d, 0) = 0 THEN 1.0
         ELSE (pay.spend_cents_90d / pay.n_purchases_90d) / (pay.spend_cents_365d / pay.n_purchases_365d)
    END AS aov_trend_90d_vs_365d,
    -- renewal (subscription periods with an end)
    coalesce(date_diff('day', p.as_of, s.paid_through::DATE), 0) AS days_to_period_end,
    (s.paid_through IS NULL)::TINYINT AS days_to_period_end_missing,
    coalesce(date_diff('day', s.latest_start::DATE, s.latest_end::DATE), 0) AS period_days,
    coalesce(s.auto_renew, FALSE)::TINYINT AS auto_renew,
    coalesce(s.n_periods, 0) AS n_periods_365d
FROM population AS p
LEFT JOIN f_subscription AS s USING (customer_id, as_of)
LEFT JOIN f_events AS e USING (customer_id, as_of)
LEFT JOIN f_payments AS pay USING (customer_id, as_of)
LEFT JOIN f_plan_changes AS pc USING (customer_id, as_of)
LEFT JOIN f_support AS t USING (customer_id, as_of)
ORDER BY p.as_of, p.customer_id
