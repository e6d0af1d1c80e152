"""The shape matrix (issue 32, marker ``shapes``: ``make test-shapes``, run by ``.ci/run``).

Every legal shape of a business's data that the source contract allows, mapped in as
docs/data-contract.md says and run through ``python -m pipeline run-training`` and
``run-nightly`` (tests/shapes.py): each shape trains and publishes scores under the ids as
given, or exits 2 with one line naming the table or column its churn definition lacks; never a
traceback. :data:`shapes.COVERING` holds each dimension's every value at least once (and the
issue's failures by name); the hypothesis test draws ``SHAPE_EXAMPLES`` (default 4) more shapes
from :func:`shapes.shapes` with a fixed seed (``SHAPE_SEED`` draws others), so CI is repeatable
and a developer can widen the search (``SHAPE_EXAMPLES=50 make test-shapes``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings
from shapes import COVERING, Base, Shape, check, membership_base, shapes, subscription_base

pytestmark = pytest.mark.shapes


@pytest.fixture(scope="session")
def bases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Base]:
    return {"subscription": subscription_base(tmp_path_factory.mktemp("base-subscription")),
            "memberships": membership_base(tmp_path_factory.mktemp("base-memberships"))}


@pytest.mark.parametrize("name", list(COVERING))
def test_every_dimension_of_the_contract(name: str, bases: dict[str, Base], tmp_path: Path) -> None:
    shape = COVERING[name]
    check(shape, bases[shape.base], tmp_path)


_examples = int(os.environ.get("SHAPE_EXAMPLES", "4"))


@seed(int(os.environ.get("SHAPE_SEED", "32")))
@settings(max_examples=_examples, deadline=None, phases=[Phase.generate], print_blob=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                 HealthCheck.data_too_large])
@given(shape=shapes())
def test_any_drawn_shape(shape: Shape, bases: dict[str, Base], tmp_path_factory: pytest.TempPathFactory) -> None:
    check(shape, bases[shape.base], tmp_path_factory.mktemp("shape"))
