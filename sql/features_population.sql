-- Population at each as_of (materialised as the temp table `population`; shared by
-- features and labels).
--
-- A customer belongs to the population at as_of when
--   * a version of the customer row exists with updated_at < as_of (the latest such
--     version supplies the demographic columns: ASOF JOIN),
--   * that version's signup_date < as_of, and
--   * no cancellation with cancelled_at < as_of exists.
-- Inputs: temp table as_of_dates(as_of DATE); views customers, cancellations.
CREATE OR REPLACE TEMP TABLE population AS
WITH candidates AS (
    SELECT c.customer_id, a.as_of, a.as_of::TIMESTAMP AS as_of_ts
    FROM (SELECT DISTINCT customer_id FROM customers) AS c
    CROSS JOIN as_of_dates AS a
)
SELECT
    k.customer_id,
    k.as_of,
    v.birth_year,
    v.gender,
    v.region,
    v.acquisition_channel,
    date_diff('day', v.signup_date::DATE, k.as_of) AS tenure_days
FROM candidates AS k
ASOF JOIN customers AS v
    ON v.customer_id = k.customer_id AND v.updated_at < k.as_of_ts
WHERE v.signup_date < k.as_of_ts
  AND NOT EXISTS (
      SELECT 1
      FROM cancellations AS x
      WHERE x.customer_id = k.customer_id AND x.cancelled_at < k.as_of_ts
  );
