-- Non-renewal churn only (label_kind = non_renewal): the population keeps the customers due for
-- renewal - their paid-through date (the latest end_date of the subscription periods started
-- before as_of) falls in [as_of, as_of + $due_days). A customer whose period runs on for longer,
-- or already ran out before as_of, cannot fail to renew in the horizon and is never a row.
-- Runs right after sql/features_population.sql; inputs: population, subscriptions.
DELETE FROM population AS p
WHERE NOT EXISTS (
    SELECT 1
    FROM (
        SELECT max(s.end_date) AS paid_through
        FROM subscriptions AS s
        WHERE s.customer_id = p.customer_id AND s.start_date < p.as_of::TIMESTAMP
    ) AS d
    WHERE d.paid_through >= p.as_of::TIMESTAMP
      AND d.paid_through < p.as_of::TIMESTAMP + to_days(CAST($due_days AS INTEGER))
);
