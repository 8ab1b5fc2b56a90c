"""Keep secrets out of everything wfnb stores or shows, and still resume exactly.

The engine knows the secrets by name (``Engine(secrets={"api": ...})``). Before a
record is written, an event published or a result shown, every occurrence of a
secret's value becomes ``***NAME***``. The name, not the value, is kept on purpose:
a resumed run restores its outputs and inputs from the store, and `Redactor.restore`
puts the values back (from the secrets of the engine that resumes), so later steps
get what they would have got. Cheap when there are no secrets: values pass through.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


def mask(name: str) -> str:
    return f"***{name}***"


class Redactor:
    def __init__(self, secrets: Mapping[str, Any] | None = None) -> None:
        pairs = [(name, str(v)) for name, v in (secrets or {}).items() if v not in (None, "")]
        # Longest first, so a secret that contains another is masked whole.
        self._secrets = sorted(pairs, key=lambda pair: len(pair[1]), reverse=True)

    def __bool__(self) -> bool:
        return bool(self._secrets)

    def __call__(self, value: Any) -> Any:
        """``value`` with every secret masked."""
        if not self._secrets or value is None:
            return value
        return _walk(value, self._mask_text)

    def restore(self, value: Any) -> Any:
        """``value`` with every mask of a known secret replaced by the secret."""
        if not self._secrets or value is None:
            return value
        return _walk(value, self._restore_text)

    def _mask_text(self, text: str) -> str:
        for name, secret in self._secrets:
            if secret in text:
                text = text.replace(secret, mask(name))
        return text

    def _restore_text(self, text: str) -> str:
        if "***" not in text:
            return text
        for name, secret in self._secrets:
            text = text.replace(mask(name), secret)
        return text


def _walk(value: Any, text: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return text(value)
    if isinstance(value, dict):
        return {_walk(k, text): _walk(v, text) for k, v in value.items()}
    if isinstance(value, list):
        return [_walk(v, text) for v in value]
    if isinstance(value, tuple):
        return tuple(_walk(v, text) for v in value)
    return value
