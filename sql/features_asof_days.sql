-- One row per (as_of, day) for every day in the look-back [as_of - $max_lookback_days, as_of),
-- with age = as_of - day in days (1 = the day before as_of).
--
-- This is the point-in-time filter of every look-back feature: a source row joins on
-- the calendar day of its timestamp, and age >= 1 means its timestamp is < as_of
-- (as_of is midnight). A window of N days is [as_of - N days, as_of), i.e. age <= N.
CREATE OR REPLACE TEMP TABLE asof_days AS
SELECT a.as_of, a.as_of - t.age::INTEGER AS day, t.age::INTEGER AS age
FROM as_of_dates AS a
CROSS JOIN range(1, $max_lookback_days + 1) AS t(age);
