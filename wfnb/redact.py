"""Keep secrets out of everything wfnb stores or shows, and still resume exactly.

The engine knows the secrets by name (``Engine(secrets={"api": ...})``). Before a
record is written, an event published or a result shown, every occurrence of a
secret's value becomes ``***NAME***``. The name, not the value, is kept on purpose:
a resumed run restores its outputs and inputs from the store, and `Redactor.restore`
puts the values back (from the secrets of the engine that resumes), so later steps
get what they would have got. Cheap when there are no secrets: values pass through.

Credentials that are not named secrets are known by where they travel: the values
of credential headers (`is_credential_header`). The http and agent steps hide them
(`hide`) in what they return or raise, and mask response headers (`mask_headers`)
and the URLs they record (`mask_url`), so none of it reaches a record either.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

HIDDEN = "***"
_CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})


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


def is_credential_header(name: str) -> bool:
    """Whether a header (or query parameter) of this name carries a credential."""
    lower = name.lower()
    return lower in _CREDENTIAL_HEADERS or "key" in lower or "token" in lower


def mask_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Headers as a dict, the values of credential headers replaced by ``***``."""
    return {name: HIDDEN if is_credential_header(name) else value for name, value in headers}


def credentials_in(headers: Mapping[str, Any]) -> list[str]:
    """The values of the credential headers among ``headers``, and for a value with
    a scheme (``Bearer X``) the credential alone, as a server may echo either."""
    found: list[str] = []
    for name, value in headers.items():
        if value is None or not is_credential_header(str(name)):
            continue
        text = str(value)
        found.append(text)
        scheme, _, credential = text.partition(" ")
        if credential.strip():
            found.append(credential.strip())
    return [text for text in found if len(text) >= 4]  # "" or "x" is no credential


def hide(value: Any, credentials: Iterable[str]) -> Any:
    """``value`` with every occurrence of each credential replaced by ``***``."""
    texts = sorted(set(credentials), key=len, reverse=True)
    if not texts or value is None:
        return value

    def text(part: str) -> str:
        for credential in texts:
            if credential in part:
                part = part.replace(credential, HIDDEN)
        return part

    return _walk(value, text)


def mask_url(url: str) -> str:
    """``url`` with its password and the values of credential-named query
    parameters (``api_key=``, ``token=``) replaced by ``***``."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        netloc = f"{user}{colon and ':' + HIDDEN}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(is_credential_header(name) for name, _ in pairs):
            query = urlencode(
                [(name, HIDDEN if is_credential_header(name) else v) for name, v in pairs],
                safe="*",
            )
    return urlunsplit(parts._replace(netloc=netloc, query=query))
