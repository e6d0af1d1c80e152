-- Payment and purchase aggregates per (customer_id, as_of), from one scan of the payments of the
-- longest look-back (the two groups read the same rows: one scan costs half of two):
--   * payments: failed payments and the last successful payment's day in
--     [as_of - $payment_lookback_days, as_of);
--   * purchases (RFM): the successful payments in the half-open windows [as_of - N days, as_of)
--     for N = $purchase_window_1 .. $purchase_window_4 (30, 90, 180, 365 days:
--     pipeline.features.PURCHASE_WINDOWS). Amounts are summed as whole cents, exactly: a date's
--     features are identical alone or in a batch.
-- A customer without a row here has no such payment: sql/features.sql fills in 0 / the sentinel.
SELECT
    p.customer_id,
    d.as_of,
    count(*) FILTER (WHERE p.status = 'failed' AND d.age <= $payment_lookback_days) AS n_failed_payments,
    max(d.day) FILTER (WHERE p.status = 'success' AND d.age <= $payment_lookback_days) AS last_success_payment_day,
    count(*) FILTER (WHERE p.status = 'success' AND d.age <= $purchase_window_1) AS n_purchases_30d,
    count(*) FILTER (WHERE p.status = 'success' AND d.age <= $purchase_window_2) AS n_purchases_90d,
    count(*) FILTER (WHERE p.status = 'success' AND d.age <= $purchase_window_3) AS n_purchases_180d,
    count(*) FILTER (WHERE p.status = 'success' AND d.age <= $purchase_window_4) AS n_purchases_365d,
    sum(round(p.amount * 100)::BIGINT) FILTER (WHERE p.status = 'success' AND d.age <= $purchase_window_1)
        AS spend_cents_30d,
    sum(round(p.amount * 100)::BIGINT) FILTER (WHERE p.status = 'success' AND d.age <= $purchase_window_2)
        AS spend_cents_90d,
    sum(round(p.amount * 100)::BIGINT) FILTER (WHERE p.status = 'success' AND d.age <= $purchase_window_3)
        AS spend_cents_180d,
    sum(round(p.amount * 100)::BIGINT) FILTER (WHERE p.status = 'success' AND d.age <= $purchase_window_4)
        AS spend_cents_365d
FROM payments AS p
JOIN asof_days AS d ON d.day = p.paid_at::DATE
WHERE p.status IN ('success', 'failed')
  AND d.age <= greatest($payment_lookback_days, $purchase_window_4)
GROUP BY p.customer_id, d.as_of
