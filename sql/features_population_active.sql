-- Inactivity churn only (label_kind = inactivity): the population keeps the customers with
-- some activity - an event or a successful payment - in the look-back [as_of - $active_days,
-- as_of); a customer who already went quiet before as_of is not "active" and is never a row.
-- Runs right after sql/features_population.sql; inputs: population, events, payments.
DELETE FROM population AS p
WHERE NOT EXISTS (
        SELECT 1 FROM events AS e
        WHERE e.customer_id = p.customer_id
          AND e.event_ts >= p.as_of::TIMESTAMP - to_days(CAST($active_days AS INTEGER))
          AND e.event_ts < p.as_of::TIMESTAMP
    )
  AND NOT EXISTS (
        SELECT 1 FROM payments AS y
        WHERE y.customer_id = p.customer_id AND y.status = 'success'
          AND y.paid_at >= p.as_of::TIMESTAMP - to_days(CAST($active_days AS INTEGER))
          AND y.paid_at < p.as_of::TIMESTAMP
    );
