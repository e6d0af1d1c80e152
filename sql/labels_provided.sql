-- Provided labels (label_kind = provided): the business's own label of (customer, label_date)
-- for the population row (customer_id, as_of = label_date). Labelled customers outside the
-- population, and population rows without a label, are not rows. Needs: population, labels.
SELECT
    p.customer_id,
    p.as_of,
    max(l.churned)::TINYINT AS label
FROM population AS p
JOIN labels AS l ON l.customer_id = p.customer_id AND l.label_date::DATE = p.as_of
GROUP BY p.customer_id, p.as_of
ORDER BY p.as_of, p.customer_id
