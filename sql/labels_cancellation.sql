-- Cancellation label per population row: 1 when a cancellation falls in the half-open
-- window [as_of, as_of + $window_days). Needs: population, cancellations.
SELECT
    p.customer_id,
    p.as_of,
    EXISTS (
        SELECT 1
        FROM cancellations AS c
        WHERE c.customer_id = p.customer_id
          AND c.cancelled_at >= p.as_of
          AND c.cancelled_at < p.as_of + $window_days::INTEGER
    )::TINYINT AS label
FROM population AS p
ORDER BY p.as_of, p.customer_id
