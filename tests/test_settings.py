"""Settings by stage (issue 33): each setting declares its range, choices, title and help on its own
field, in its section; the DAGs' trigger forms are built from those fields, so a form's type, bounds,
choices and default are the setting's; a DAG file's parse reads the settings once."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

from pipeline import config
from pipeline.config import LABEL_KINDS, SECTIONS, SETTING_TYPES, Settings, load_settings

DAG_IDS = ("churn_training", "churn_nightly")
JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string", Path: "string"}


def test_every_numeric_setting_declares_its_range_and_the_defaults_are_in_it():
    numeric = [name for name, typ in SETTING_TYPES.items() if typ in (int, float)]
    assert len(numeric) > 50
    without = [name for name in numeric if config.spec(name).low is None]
    assert without == [], f"numeric settings without a range on their field: {without}"
    ranged = [name for name in SETTING_TYPES if config.spec(name).low is not None]
    assert sorted(ranged) == sorted(numeric), "a range on a setting that is not a number"
    defaults = Settings()  # the defaults pass their own checks
    for name in numeric:
        rule = config.spec(name)
        assert rule.low <= getattr(defaults, name) <= rule.high, name


def test_the_closed_sets_are_the_settings_choices():
    assert config.spec("label_kind").choices == LABEL_KINDS
    assert config.spec("calibration").choices == ("isotonic", "sigmoid")
    for name in SETTING_TYPES:
        choices = config.spec(name).choices
        assert not choices or getattr(Settings(), name) in choices, name


@pytest.mark.parametrize(("env", "value", "message"), [
    ("CHURNFLOW_CALIBRATION", "platt", "config calibration: 'platt' is not one of isotonic, sigmoid"),
    ("CHURNFLOW_LABEL_KIND", "churny",
     "config label_kind: 'churny' is not one of cancellation, inactivity, non_renewal, provided"),
])
def test_a_value_outside_a_settings_choices_is_refused_in_one_line(monkeypatch, env, value, message):
    monkeypatch.setenv(env, value)
    with pytest.raises(ValueError) as err:
        load_settings()
    assert str(err.value) == message


def test_the_settings_are_declared_by_section_in_section_order():
    by_section = [f.name for cls in SECTIONS.values() for f in dataclasses.fields(cls)]
    assert [f.name for f in dataclasses.fields(Settings)] == by_section  # each setting in one section, in order
    assert not set(SECTIONS) & set(SETTING_TYPES), "a section named as a setting"
    settings = Settings()
    assert settings.section("labels")["horizon_days"] == settings.horizon_days == 30
    assert Settings.section_of("psi_warning") == "monitoring"
    assert list(settings.section("email")) == [f.name for f in dataclasses.fields(config.EmailSettings)]
    assert all(config.spec(name).title for name in SETTING_TYPES), "a setting without a title"


def test_a_yaml_file_may_group_its_settings_by_section(tmp_path):
    flat = tmp_path / "flat.yaml"
    flat.write_text("horizon_days: 45\npsi_warning: 0.2\nemail_enabled: false\ndata_dir: d\n")
    grouped = tmp_path / "grouped.yaml"
    grouped.write_text("labels:\n  horizon_days: 45\nmonitoring: {psi_warning: 0.2}\nemail:\n  email_enabled: false\n"
                       "storage:\n  data_dir: d\n")
    mixed = tmp_path / "mixed.yaml"
    mixed.write_text("horizon_days: 45\nmonitoring: {psi_warning: 0.2}\nemail_enabled: false\nstorage: {data_dir: d}\n")
    expected = load_settings(flat)
    assert (expected.horizon_days, expected.psi_warning, expected.data_dir) == (45, 0.2, tmp_path / "d")
    assert load_settings(grouped) == expected
    assert load_settings(mixed) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("monitoring:\n  psi_warnin: 0.2\n", r"unknown settings \['monitoring.psi_warnin'\]$"),
    ("monitorin:\n  psi_warning: 0.2\n", r"unknown settings \['monitorin'\] \(the sections are storage, .*email, serving\)$"),
    ("labels:\n  psi_warning: 0.2\n", "psi_warning is a monitoring setting, not a labels one: put it under monitoring:"),
    ("psi_warning: 0.1\nmonitoring: {psi_warning: 0.2}\n", "psi_warning is given twice"),
    ("monitoring: 3\n", "monitoring is a section: expected a mapping of its settings, got 3"),
    ("labels: {risk_band_high: 0.7}\n", "risk_band_high is no longer a setting"),
])
def test_a_bad_key_of_a_sectioned_yaml_file_is_one_line_naming_it(tmp_path, text, message):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    with pytest.raises(ValueError, match=message) as err:
        load_settings(cfg)
    assert "\n" not in str(err.value)


def test_setting_param_takes_what_it_accepts_from_the_field():
    from churnflow_airflow.params import setting_param

    param = setting_param(Settings(), "training_snapshots", title="Snapshots")
    assert (param.value, param.schema["minimum"], param.schema["maximum"], param.schema["title"]) == (6, 2, 120,
                                                                                                      "Snapshots")
    with pytest.raises(TypeError, match=r"\['maximum'\] come from the setting's field"):
        setting_param(Settings(), "training_snapshots", maximum=36)


@pytest.fixture(scope="module")
def dags(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(str(ROOT / "dags"))
    assert bag.import_errors == {}
    return {dag_id: bag.dags[dag_id] for dag_id in DAG_IDS}


@pytest.mark.parametrize("dag_id", DAG_IDS)
def test_a_form_param_named_after_a_setting_is_exactly_that_setting(dags, dag_id):
    params, settings = dags[dag_id].params, load_settings()
    named = [name for name in params if name in SETTING_TYPES]
    assert "horizon_days" in named
    for name in named:
        param, rule = params.get_param(name), config.spec(name)
        assert param.schema["type"] == JSON_TYPES[SETTING_TYPES[name]], name
        assert (param.schema.get("minimum"), param.schema.get("maximum")) == (rule.low, rule.high), name
        assert param.schema.get("enum", []) == list(rule.choices), name
        assert param.value == getattr(settings, name), name
        assert param.schema["title"] == rule.title and param.description, name


def test_the_training_form_offers_the_label_and_search_settings(dags):
    params = dags["churn_training"].params
    for name in ("label_kind", "training_snapshots", "search_iterations", "cv_folds", "inactivity_days",
                 "renewal_grace_days", "promotion_min_improvement"):
        assert name in params, name
    assert params.get_param("label_kind").schema["enum"] == list(LABEL_KINDS)
    assert "drift_report_sample_rows" in dags["churn_nightly"].params


@pytest.mark.parametrize(("name", "value"), [
    ("training_snapshots", 121), ("training_snapshots", 1), ("cv_folds", 21), ("search_iterations", 1001),
    ("horizon_days", 731), ("label_kind", "churny"),
])
def test_a_form_value_outside_the_settings_range_or_choices_is_refused(dags, name, value):
    from airflow.sdk.definitions.param import ParamValidationError

    param = dags["churn_training"].params.get_param(name)
    with pytest.raises(ParamValidationError):
        param.resolve(value)
    rule = config.spec(name)
    accepted = rule.choices[-1] if rule.choices else rule.high
    assert param.resolve(accepted) == accepted  # the setting's own bound is accepted


def test_the_runs_params_named_after_settings_replace_them():
    from churnflow_airflow.tasks import settings_for

    settings = settings_for({"params": {"horizon_days": 45, "label_kind": "inactivity", "lookback_days": 3,
                                        "recipients": []}})
    assert (settings.horizon_days, settings.label_kind) == (45, "inactivity")


COUNT_PARSE = """
import runpy, sys
import pipeline.config as config
calls = []
load = config.load_settings
config.load_settings = lambda *a, **k: calls.append(1) or load(*a, **k)
runpy.run_path(sys.argv[1])
print("load_settings calls:", len(calls))
"""


@pytest.mark.parametrize("dag_file", ["churn_training.py", "churn_nightly.py"])
def test_a_dag_file_parse_reads_the_settings_once(dag_file):
    out = subprocess.run([sys.executable, "-c", COUNT_PARSE, str(ROOT / "dags" / dag_file)], capture_output=True,
                         text=True, env=os.environ.copy(), check=True)
    assert out.stdout.strip().splitlines()[-1] == "load_settings calls: 1", out.stdout + out.stderr


def test_the_parse_settings_follow_a_config_change(monkeypatch, tmp_path):
    from churnflow_airflow.params import parse_settings

    assert parse_settings() is parse_settings()  # one read while nothing changed
    monkeypatch.setenv("CHURNFLOW_HORIZON_DAYS", "45")
    assert parse_settings().horizon_days == 45
    cfg = tmp_path / "churnflow.yaml"
    cfg.write_text("labels: {horizon_days: 60}\n")
    monkeypatch.delenv("CHURNFLOW_HORIZON_DAYS")
    monkeypatch.setenv("CHURNFLOW_CONFIG", str(cfg))
    assert parse_settings().horizon_days == 60
    cfg.write_text("labels: {horizon_days: 61}\n")
    assert parse_settings().horizon_days == 61
