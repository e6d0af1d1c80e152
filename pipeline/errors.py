"""The one exception family that says "retrying cannot help".

Bad or missing data, a training set that cannot train, a registry without a champion:
rerunning the same task on the same inputs gives the same error. The DAGs fail tasks
that raise a :class:`DataError` at once (no retries); every other exception (a database
or mail server away, a full disk) is treated as a passing infrastructure fault and retried.
"""


class DataError(RuntimeError):
    """Bad, missing or insufficient data (or model state): fix the input, do not retry."""


class IncompleteDataError(DataError):
    """An expected partition of an input is missing or empty: the batch is refused whole,
    and the lake keeps what it had."""


class TrainingError(DataError):
    """The data cannot train a model (one class, too few snapshots or rows) or the setup is wrong."""


def first_line(exc: BaseException) -> str:
    """An exception's first line, for a one-line error that wraps it (its type if it says nothing)."""
    text = str(exc)
    return text.splitlines()[0] if text else type(exc).__name__
