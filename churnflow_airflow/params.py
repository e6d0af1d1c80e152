"""The DAGs' trigger forms built from the settings' own fields, so a form's bounds and choices
cannot disagree with the settings' (``pipeline.config``: each setting declares its range, choices,
title and help), and the one settings read of a DAG file's parse.

A Param named after a setting *is* that setting: :func:`setting_param` builds it (type, range,
choices, title, help, default = the current value), and at run time the run's value replaces the
setting's (``churnflow_airflow.tasks.settings_for``). Params that are no setting (recipients,
send_email, lookback_days) are written by hand in their DAG file.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

from airflow.sdk import Param

from pipeline import config
from pipeline.config import SETTING_TYPES, Settings

#: the JSON-schema type of a setting's Python type
JSON_TYPES: dict[Any, str] = {bool: "boolean", int: "integer", float: "number", str: "string", Path: "string"}
#: what a Param of a setting takes from the setting's field, never from the caller
OWNED = frozenset({"type", "minimum", "maximum", "enum", "default"})


def parse_settings() -> Settings:
    """The settings a DAG file is parsed with (its defaults, the sensor's timeouts, the run
    timeout): ``load_settings()`` once for what it reads (the ``CHURNFLOW_*`` environment, the
    config file's text, the working directory), so the DAG files and their helpers read
    them once per parse, and a changed config is read by the next parse. Tasks read their
    settings afresh when they run (``settings_for``), never these."""
    path = Path(os.environ.get("CHURNFLOW_CONFIG", "churnflow.yaml"))
    text = path.read_bytes() if path.is_file() else None
    env = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("CHURNFLOW_")))
    return _settings_as_of(os.getcwd(), env, text)


@functools.lru_cache(maxsize=1)
def _settings_as_of(cwd: str, env: tuple[tuple[str, str], ...], config_text: bytes | None) -> Settings:
    """``load_settings()``, for as long as what it reads is the same (the arguments)."""
    return config.load_settings()


def setting_param(settings: Settings, name: str, **overrides: Any) -> Param:
    """The trigger-form Param of setting ``name``: its JSON type from the field's type, its range
    as minimum/maximum, its choices as enum, its title and help, the current value (of
    ``settings``) as default. ``overrides`` may change how it reads (title, description), never
    what it accepts."""
    owned = sorted(OWNED & overrides.keys())
    if owned:
        raise TypeError(f"setting_param({name!r}): {owned} come from the setting's field, not the form")
    rule = config.spec(name)
    schema: dict[str, Any] = {"type": JSON_TYPES[SETTING_TYPES[name]], "title": rule.title or name}
    if rule.low is not None:
        schema.update(minimum=rule.low, maximum=rule.high)
    if rule.choices:
        schema["enum"] = list(rule.choices)
    if rule.help:
        schema["description"] = rule.help[:1].upper() + rule.help[1:] + ("" if rule.help.endswith(".") else ".")
    schema.update(overrides)
    value = getattr(settings, name)
    return Param(str(value) if isinstance(value, Path) else value, **schema)


def setting_params(settings: Settings, *names: str) -> dict[str, Param]:
    """:func:`setting_param` of each of ``names``, keyed by name (a DAG's ``params``)."""
    return {name: setting_param(settings, name) for name in names}
