-- The shop's orders as churnflow's `payments` contract table (one payment per order), for
-- one half-open ingestion window [window_start, window_end) of paid_at. A completed order is
-- a successful payment; a returned one a refund, which is not activity for inactivity churn
-- and not a purchase in the RFM features. amount is the order total.
SELECT
    order_no AS payment_id,
    customer_no AS customer_id,
    ordered_at AS paid_at,
    round(quantity * unit_price, 2) AS amount,
    CASE state WHEN 'complete' THEN 'success' WHEN 'returned' THEN 'refunded' ELSE state END AS status
FROM orders
WHERE ordered_at >= :window_start
  AND ordered_at < :window_end
ORDER BY ordered_at
