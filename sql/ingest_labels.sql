-- Incremental extract of the labels the business supplies (label_kind provided) for one half-open
-- ingestion window [window_start, window_end) of label_date. A business maps its own labels
-- table here (sql_dir): customer_id, label_date, churned (0/1, its own churn definition within
-- horizon_days of label_date).
SELECT *
FROM labels
WHERE label_date >= :window_start
  AND label_date < :window_end
ORDER BY label_date
