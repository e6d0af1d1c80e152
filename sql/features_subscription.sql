-- Subscription in force per population row: the period with the latest start_date
-- before as_of, and the one in force $billing_change_days days earlier (for the billing
-- change). Periods sharing a start_date are resolved by the highest subscription_id.
WITH periods AS (
    SELECT customer_id, start_date, plan, monthly_fee, payment_method
    FROM subscriptions
    QUALIFY row_number() OVER (
        PARTITION BY customer_id, start_date ORDER BY subscription_id DESC
    ) = 1
),
keys AS (
    SELECT
        customer_id,
        as_of,
        as_of::TIMESTAMP AS as_of_ts,
        (as_of - $billing_change_days::INTEGER)::TIMESTAMP AS before_ts
    FROM population
)
SELECT
    k.customer_id,
    k.as_of,
    s.plan,
    s.monthly_fee,
    s.payment_method,
    s0.monthly_fee AS monthly_fee_before
FROM keys AS k
ASOF LEFT JOIN periods AS s
    ON s.customer_id = k.customer_id AND s.start_date < k.as_of_ts
ASOF LEFT JOIN periods AS s0
    ON s0.customer_id = k.customer_id AND s0.start_date < k.before_ts
