-- Inactivity label per population row: 1 when the customer has no event and no successful
-- payment in the half-open window [as_of, as_of + $window_days).
-- Needs: population, as_of_dates, events, payments.
WITH label_days AS (
    SELECT a.as_of, a.as_of + t.offset_days::INTEGER AS day
    FROM as_of_dates AS a
    CROSS JOIN range($window_days) AS t(offset_days)
),
activity AS (
    SELECT customer_id, event_ts::DATE AS day FROM events
    UNION ALL
    SELECT customer_id, paid_at::DATE AS day FROM payments WHERE status = 'success'
),
active AS (
    SELECT DISTINCT x.customer_id, d.as_of
    FROM activity AS x
    JOIN label_days AS d ON d.day = x.day
)
SELECT
    p.customer_id,
    p.as_of,
    (a.customer_id IS NULL)::TINYINT AS label
FROM population AS p
LEFT JOIN active AS a USING (customer_id, as_of)
ORDER BY p.as_of, p.customer_id
