-- Support aggregates per (customer_id, as_of) over all tickets opened before as_of:
-- tickets opened in [as_of - $ticket_window_days, as_of), and tickets still open at as_of
-- (resolved_at missing or not before as_of: a resolution written later cannot leak).
SELECT
    t.customer_id,
    a.as_of,
    count(*) FILTER (WHERE t.opened_at >= a.as_of - $ticket_window_days::INTEGER) AS n_tickets,
    count(*) FILTER (WHERE t.resolved_at IS NULL OR t.resolved_at >= a.as_of) AS n_open_tickets
FROM support_tickets AS t
JOIN as_of_dates AS a ON t.opened_at < a.as_of
GROUP BY t.customer_id, a.as_of
