"""Every store in wfnb passes the public conformance suite."""

from __future__ import annotations

import pytest

from tests.store.conftest import IMPLEMENTATIONS
from wfnb.testing import StoreConformance


@pytest.mark.parametrize("store", IMPLEMENTATIONS, indirect=True)
class TestConformance(StoreConformance):
    pass
