"""pytest --nbval over these notebooks uses the sanitizer next to them, wherever
pytest runs from (nbval opens the file relative to the working directory)."""

from __future__ import annotations

from pathlib import Path

import pytest


def pytest_configure(config: pytest.Config) -> None:
    if config.option.nbval_sanitize_with is None:
        config.option.nbval_sanitize_with = str(Path(__file__).with_name("sanitize.cfg"))
