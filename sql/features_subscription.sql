-- Subscription in force per population row: the period with the latest start_date
-- before as_of, and the one in force $billing_change_days days earlier (for the billing
-- change). Periods sharing a start_date are resolved by the highest subscription_id:
-- max_by over the key (start_date, subscription_id), as one HUGEINT (latest_key in
-- sql/features_macros.sql). One hash join and aggregate (two ASOF joins over a
-- de-duplicated period table took 1.5x as long at 1M customers).
SELECT
    k.customer_id,
    k.as_of,
    max_by(s.plan, latest_key(s.start_date, s.subscription_id)) AS plan,
    max_by(s.monthly_fee, latest_key(s.start_date, s.subscription_id)) AS monthly_fee,
    max_by(s.payment_method, latest_key(s.start_date, s.subscription_id)) AS payment_method,
    max_by(s.monthly_fee, latest_key(s.start_date, s.subscription_id)) FILTER (
        WHERE s.start_date < (k.as_of - $billing_change_days::INTEGER)::TIMESTAMP
    ) AS monthly_fee_before,
    -- renewal: the paid-through date, the latest period's length and auto-renew flag, renewals
    max(s.end_date) AS paid_through,
    max_by(s.end_date, latest_key(s.start_date, s.subscription_id)) AS latest_end,
    max_by(s.start_date, latest_key(s.start_date, s.subscription_id)) AS latest_start,
    max_by(s.auto_renew, latest_key(s.start_date, s.subscription_id)) AS auto_renew,
    count(s.start_date) FILTER (
        WHERE s.start_date >= (k.as_of - $plan_change_lookback_days::INTEGER)::TIMESTAMP
    ) AS n_periods
FROM population AS k
LEFT JOIN subscriptions AS s
    ON s.customer_id = k.customer_id AND s.start_date < k.as_of::TIMESTAMP
GROUP BY k.customer_id, k.as_of
