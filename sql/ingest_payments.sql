-- Incremental extract of payments for one half-open ingestion window [window_start, window_end).
-- All columns are selected so that a column missing at the source reaches validation,
-- which names it, instead of failing here with a database error.
SELECT *
FROM payments
WHERE paid_at >= :window_start
  AND paid_at < :window_end
ORDER BY paid_at
