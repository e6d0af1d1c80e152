-- Behavioural windows, stage 1: the events read once, summed per customer and interval.
--
-- The windows of all as_of dates cut the calendar into disjoint intervals [lo, hi): every
-- as_of and every as_of - N (N in $windows) is an edge. A window [as_of - N, as_of) is then
-- an exact union of intervals, so each event is aggregated once however many snapshot
-- windows overlap it (the join on every (as_of, day) pair read the events up to three
-- times for monthly snapshots). Stage 2 (sql/features_events.sql) adds up the intervals of
-- each window per date. partial_aggregates is generated from identifiers only, e.g.
--     count(*) FILTER (WHERE is_login) AS n_logins
--     sum(duration_us)::BIGINT AS total_duration_s
-- Sums are integers (durations in whole microseconds) so that no regrouping changes them.
CREATE OR REPLACE TEMP TABLE event_intervals AS
WITH edges AS (
    SELECT DISTINCT a.as_of - w.days AS edge
    FROM as_of_dates AS a
    CROSS JOIN (SELECT unnest($windows::INTEGER[]) AS days) AS w
    UNION
    SELECT as_of FROM as_of_dates
)
SELECT edge AS lo, lead(edge) OVER (ORDER BY edge) AS hi
FROM edges
QUALIFY hi IS NOT NULL;

-- the intervals inside the longest window of each as_of (stage 2 joins them)
CREATE OR REPLACE TEMP TABLE event_interval_dates AS
SELECT i.lo, a.as_of
FROM event_intervals AS i
JOIN as_of_dates AS a ON i.lo >= a.as_of - $max_window::INTEGER AND i.hi <= a.as_of;

-- every day inside some window, with the interval it belongs to
CREATE OR REPLACE TEMP TABLE event_days AS
SELECT DISTINCT d.day, i.lo
FROM asof_days AS d
JOIN event_intervals AS i ON d.day >= i.lo AND d.day < i.hi
WHERE d.age <= $max_window;

CREATE OR REPLACE TEMP TABLE event_partials AS
SELECT
    ev.customer_id,
    m.lo,
    {partial_aggregates},
    max(m.day) FILTER (WHERE ev.is_login) AS last_login_day
FROM (
    SELECT
        customer_id,
        event_ts::DATE AS day,
        TRUE AS is_event,
        event_type = 'login' AS is_login,
        event_type = 'session' AS is_session,
        event_type = 'content' AS is_content,
        floor(coalesce(duration_s, 0) * $us_per_s + 0.5)::BIGINT AS duration_us,
        coalesce(content_units, 0)::BIGINT AS content_units
    FROM events
) AS ev
JOIN event_days AS m ON m.day = ev.day
GROUP BY ev.customer_id, m.lo;
