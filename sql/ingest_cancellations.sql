-- Incremental extract of cancellations for one half-open ingestion window [window_start, window_end).
-- All columns are selected so that a column missing at the source reaches validation,
-- which names it, instead of failing here with a database error.
SELECT *
FROM cancellations
WHERE cancelled_at >= :window_start
  AND cancelled_at < :window_end
ORDER BY cancelled_at
