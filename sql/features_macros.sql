-- Daily event rate over a short window divided by the rate over the long window that
-- contains it. 1.0 ("no change") when the long window has no events, and then neither
-- has the short one; no_events_<long>d_flag marks those rows.
CREATE OR REPLACE TEMP MACRO trend_ratio(short_n, short_days, long_n, long_days) AS
    CASE
        WHEN coalesce(long_n, 0) = 0 THEN 1.0
        ELSE (coalesce(short_n, 0) / short_days) / (long_n / long_days)
    END;

-- A key that orders rows as (ts, id) does (pipeline/features/build.py: one HUGEINT for
-- integer ids, a STRUCT for text ids).
CREATE OR REPLACE TEMP MACRO latest_key(ts, id) AS
    {latest_key};
