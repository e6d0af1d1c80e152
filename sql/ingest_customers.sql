-- Incremental extract of customers for one half-open ingestion window [window_start, window_end).
-- All columns are selected so that a column missing at the source reaches validation,
-- which names it, instead of failing here with a database error.
SELECT *
FROM customers
WHERE updated_at >= :window_start
  AND updated_at < :window_end
ORDER BY updated_at
