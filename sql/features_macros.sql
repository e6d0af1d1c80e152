-- Daily event rate over a short window divided by the rate over the long window that
-- contains it. 1.0 ("no change") when the long window has no events, and then neither
-- has the short one; no_events_<long>d_flag marks those rows.
CREATE OR REPLACE TEMP MACRO trend_ratio(short_n, short_days, long_n, long_days) AS
    CASE
        WHEN coalesce(long_n, 0) = 0 THEN 1.0
        ELSE (coalesce(short_n, 0) / short_days) / (long_n / long_days)
    END;

-- One HUGEINT that orders rows as (ts, id) does: the microsecond timestamp above any BIGINT
-- id (shifted to be non-negative). max_by over it runs ~2x faster than over the STRUCT
-- (ts, id) at a million customers (make bench) and picks the same row.
CREATE OR REPLACE TEMP MACRO latest_key(ts, id) AS
    epoch_us(ts)::HUGEINT * 18446744073709551616 + (id::HUGEINT + 9223372036854775808);
