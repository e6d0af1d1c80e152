-- Incremental extract of plan_changes for one half-open ingestion window [window_start, window_end).
-- All columns are selected so that a column missing at the source reaches validation,
-- which names it, instead of failing here with a database error.
SELECT *
FROM plan_changes
WHERE changed_at >= :window_start
  AND changed_at < :window_end
ORDER BY changed_at
