-- Payment aggregates per (customer_id, as_of) over [as_of - $payment_lookback_days, as_of).
SELECT
    p.customer_id,
    d.as_of,
    count(*) FILTER (WHERE p.status = 'failed') AS n_failed_payments,
    max(d.day) FILTER (WHERE p.status = 'success') AS last_success_payment_day
FROM payments AS p
JOIN asof_days AS d ON d.day = p.paid_at::DATE
WHERE d.age <= $payment_lookback_days
GROUP BY p.customer_id, d.as_of
