-- Plan-change aggregates per (customer_id, as_of): changes in
-- [as_of - $plan_change_lookback_days, as_of) and whether one of the changes in
-- [as_of - $downgrade_days, as_of) moved to a lower-ranked plan (temp table plan_rank: a plan's
-- typical monthly fee in the periods started before as_of).
SELECT
    c.customer_id,
    d.as_of,
    count(*) AS n_plan_changes,
    coalesce(bool_or(d.age <= $downgrade_days AND n.rank < o.rank), FALSE) AS downgraded
FROM plan_changes AS c
JOIN asof_days AS d ON d.day = c.changed_at::DATE
LEFT JOIN plan_rank AS o ON o.as_of = d.as_of AND o.plan = c.old_plan
LEFT JOIN plan_rank AS n ON n.as_of = d.as_of AND n.plan = c.new_plan
WHERE d.age <= $plan_change_lookback_days
GROUP BY c.customer_id, d.as_of
