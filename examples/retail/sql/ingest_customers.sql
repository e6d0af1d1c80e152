-- The shop's customers as churnflow's `customers` contract table, for one half-open
-- ingestion window [window_start, window_end) of the contract's time column (updated_at).
-- The shop never updates a customer row, so its registration time is both signup_date and
-- updated_at. Unmapped codes pass through unchanged: validation names the value it rejects.
SELECT
    customer_no AS customer_id,
    registered_at AS signup_date,
    year_of_birth AS birth_year,
    CASE sex WHEN 'female' THEN 'F' WHEN 'male' THEN 'M' WHEN 'unspecified' THEN 'X' ELSE sex END AS gender,
    region,
    CASE source WHEN 'search_ad' THEN 'paid_search' WHEN 'friend' THEN 'referral' ELSE source END
        AS acquisition_channel,
    registered_at AS updated_at
FROM shop_customers
WHERE registered_at >= :window_start
  AND registered_at < :window_end
ORDER BY registered_at
