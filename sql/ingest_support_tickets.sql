-- Incremental extract of support_tickets for one half-open ingestion window [window_start, window_end).
-- All columns are selected so that a column missing at the source reaches validation,
-- which names it, instead of failing here with a database error.
SELECT *
FROM support_tickets
WHERE opened_at >= :window_start
  AND opened_at < :window_end
ORDER BY opened_at
