"""Keep secrets out of everything wfnb stores or shows.

The engine knows the secret values (``Engine(secrets=...)``); before a record is
written or an event published, every occurrence of one is replaced by ``***``.
Cheap when there are no secrets: the values pass through untouched.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

MASK = "***"


class Redactor:
    def __init__(self, secrets: Iterable[Any] = ()) -> None:
        # Longest first, so a secret that contains another is masked whole.
        self._values = sorted(
            {str(v) for v in secrets if v not in (None, "")}, key=len, reverse=True
        )

    def __bool__(self) -> bool:
        return bool(self._values)

    def __call__(self, value: Any) -> Any:
        if not self._values or value is None:
            return value
        return self._walk(value)

    def _walk(self, value: Any) -> Any:
        if isinstance(value, str):
            for secret in self._values:
                if secret in value:
                    value = value.replace(secret, MASK)
            return value
        if isinstance(value, dict):
            return {self._walk(k): self._walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._walk(v) for v in value]
        if isinstance(value, tuple):
            return tuple(self._walk(v) for v in value)
        return value
