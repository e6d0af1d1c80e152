"""What the generators share: the calendar of a generated period, column batches, progress
callbacks and a fast bulk insert into the source database."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import sqlalchemy as sa

#: the generated subscription business's own words (not the contract's: vocabularies are open)
PLANS: tuple[str, ...] = ("basic", "standard", "premium")
#: list price per plan before any price change (the generator's drift raises these)
PLAN_FEES: dict[str, float] = {"basic": 9.99, "standard": 15.99, "premium": 22.99}
GENDERS: tuple[str, ...] = ("F", "M", "X")
REGIONS: tuple[str, ...] = ("north", "south", "east", "west", "central")
CHANNELS: tuple[str, ...] = ("organic", "paid_search", "social", "referral", "partner", "tiktok")
PAYMENT_METHODS: tuple[str, ...] = ("card", "paypal", "bank_transfer")
TICKET_CATEGORIES: tuple[str, ...] = ("billing", "technical", "content", "account", "cancellation")
CANCEL_REASONS: tuple[str, ...] = ("price", "not_using", "technical", "competitor", "other")

Progress = Callable[[str], None]
Columns = dict[str, np.ndarray]

US_PER_S = 1_000_000
US_PER_HOUR = 3_600 * US_PER_S
US_PER_DAY = 24 * US_PER_HOUR
INSERT_CHUNK_ROWS = 100_000
#: the truth window of the subscription generator (30-day cancellation), which its calendar spills over
WINDOW_DAYS = 30


@dataclass(frozen=True)
class Calendar:
    """The period ``[start, start + months)``; month ``k`` starts on day ``month_day[k]``."""

    start: dt.date
    months: int
    #: first day of months 0 .. months + 1, as day indexes relative to ``start``
    month_day: np.ndarray

    @classmethod
    def of(cls, start: dt.date, months: int) -> Calendar:
        firsts = (np.datetime64(start, "M") + np.arange(months + 2)).astype("datetime64[D]")
        return cls(start, months, (firsts - np.datetime64(start, "D")).astype(np.int64))

    @property
    def n_days(self) -> int:
        return int(self.month_day[self.months])

    @property
    def start_us(self) -> int:
        return int(np.datetime64(self.start, "us").astype(np.int64))

    @property
    def end_us(self) -> int:
        return self.day_us(self.n_days)

    def day_us(self, day: int) -> int:
        return self.start_us + int(day) * US_PER_DAY

    def month_us(self, m: int) -> int:
        return self.day_us(self.month_day[m])

    def month_len(self, m: int) -> int:
        return int(self.month_day[m + 1] - self.month_day[m])

    def month_of_day(self, day: int) -> int:
        return int(np.searchsorted(self.month_day, day, side="right") - 1)

    def year(self, m: int) -> int:
        return int((np.datetime64(self.start, "M") + m).astype("datetime64[Y]").astype(np.int64)) + 1970

    def label(self, m: int) -> str:
        return str(np.datetime64(self.start, "M") + m)

    def spill(self, m: int) -> int:
        """Days of month ``m``'s 30-day window still governed by month ``m - 1``'s hazard."""
        if m == 0:
            return 0
        return max(0, int(self.month_day[m - 1]) + WINDOW_DAYS - int(self.month_day[m]))

    def hazard_days(self, m: int) -> tuple[int, int]:
        """Days ``[first, end)`` governed by month ``m``'s hazard, clipped to the period."""
        first = int(self.month_day[m]) + self.spill(m)
        end = max(int(self.month_day[m + 1]), int(self.month_day[m]) + WINDOW_DAYS)
        return first, min(end, self.n_days)

    def billing_us(self, m: int, dom: np.ndarray, tod_us: np.ndarray) -> np.ndarray:
        """Billing instants in month ``m`` (day of month clamped to the month's length)."""
        day = self.month_day[m] + np.minimum(dom, self.month_len(m)) - 1
        return self.start_us + day * US_PER_DAY + tod_us


def insert(conn: sa.Connection, table: sa.Table, columns: Columns, use_driver: bool | None = None) -> None:
    """Bulk insert in chunks; SQLite uses the driver's executemany (much faster than Core)."""
    names = [c.name for c in table.columns]
    use_driver = conn.dialect.name == "sqlite" if use_driver is None else use_driver
    n = len(columns[names[0]])
    for lo in range(0, n, INSERT_CHUNK_ROWS):
        values = [columns[name][lo : lo + INSERT_CHUNK_ROWS].tolist() for name in names]
        if use_driver:
            executemany(conn, table, values)
        else:
            conn.execute(table.insert(), [dict(zip(names, row, strict=True)) for row in zip(*values, strict=True)])


def executemany(conn: sa.Connection, table: sa.Table, values: list[list[object]]) -> None:
    """The driver's executemany, with every value bound exactly as SQLAlchemy Core would bind it."""
    dialect = conn.dialect
    for i, column in enumerate(table.columns):
        process = column.type.dialect_impl(dialect).bind_processor(dialect)
        if process is not None:
            values[i] = list(map(process, values[i]))
    conn.exec_driver_sql(str(table.insert().compile(dialect=dialect)), list(zip(*values, strict=True)))


def summary_lines(summary: dict, business: str, example: str, truth_line: str) -> str:
    """A generated business's summary as printed by ``generate --business ...``: what was made,
    its rows (in its own schema, mapped by ``examples/<example>/sql``), the truth, where it is."""
    rows = ", ".join(f"{name} {n:,}" for name, n in summary["rows"].items())
    return "\n".join([
        f"generated {business} of {summary['customers']:,} {'members' if example == 'memberships' else 'customers'}, "
        f"[{summary['start']}, {summary['end']}), seed {summary['seed']}, {summary['seconds']}s",
        f"rows: {rows} (its own schema: map it with examples/{example}/sql)",
        truth_line,
        f"database: {summary['db_url']}",
        f"truth:    {summary['truth_path']}",
    ])
