-- Non-renewal label per population row (label_kind = non_renewal; the population holds only the
-- customers due for renewal, sql/features_population_due.sql): with E the paid-through date (the
-- latest end_date of the periods started before as_of), 1 when no new period starts in
-- [as_of, E + $grace_days): the subscription ended and was not renewed within the grace days.
-- Needs: population, subscriptions (up to as_of + horizon + grace).
WITH due AS (
    SELECT p.customer_id, p.as_of, max(s.end_date) AS paid_through
    FROM population AS p
    JOIN subscriptions AS s ON s.customer_id = p.customer_id AND s.start_date < p.as_of::TIMESTAMP
    GROUP BY p.customer_id, p.as_of
)
SELECT
    d.customer_id,
    d.as_of,
    (NOT EXISTS (
        SELECT 1
        FROM subscriptions AS r
        WHERE r.customer_id = d.customer_id
          AND r.start_date >= d.as_of::TIMESTAMP
          AND r.start_date < d.paid_through + to_days(CAST($grace_days AS INTEGER))
    ))::TINYINT AS label
FROM due AS d
ORDER BY d.as_of, d.customer_id
