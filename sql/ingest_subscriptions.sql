-- Incremental extract of subscriptions for one half-open ingestion window [window_start, window_end).
-- All columns are selected so that a column missing at the source reaches validation,
-- which names it, instead of failing here with a database error.
SELECT *
FROM subscriptions
WHERE start_date >= :window_start
  AND start_date < :window_end
ORDER BY start_date
