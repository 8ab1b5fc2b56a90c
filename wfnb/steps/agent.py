"""`agent` steps: one call to an OpenAI-compatible chat-completions endpoint.

Any server that speaks ``POST {base_url}/chat/completions`` works: OpenAI, Ollama
(``http://localhost:11434/v1``), vLLM, llama.cpp's server. Requests go through the
same `exchange` as http steps, so they share the pooled client, the status and
retry rules, ``Idempotency-Key``, ``max_bytes`` and the ``http_requests`` rows;
each call's token use is added to its row, which the ``token_usage`` view sums.

Where the endpoint comes from, first found wins: the step's own ``base_url``,
``model`` and ``api_key``; the workflow's ``agent:`` mapping; the engine's
``agent_base_url`` / ``agent_model`` (``%config Wfnb.agent_base_url``); the
environment (``OPENAI_BASE_URL``, ``WFNB_AGENT_MODEL``, ``OPENAI_API_KEY``).

With ``output_schema`` the request asks for JSON (``response_format`` of type
``json_schema``) and the reply is validated; a reply that is not JSON, or not JSON
of that shape, gets one repair request that quotes the problem.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import jsonschema
from pydantic import BaseModel, ValidationError

from wfnb.errors import DefinitionError, StepError
from wfnb.model import DEFAULT_MAX_BYTES, AgentDefaults, AgentSpec, Step
from wfnb.redact import credentials_in, hide
from wfnb.steps.base import StepContext
from wfnb.steps.http import Reply, exchange

_ENV = {"base_url": "OPENAI_BASE_URL", "model": "WFNB_AGENT_MODEL", "api_key": "OPENAI_API_KEY"}
_CONFIG = {"base_url": "Wfnb.agent_base_url", "model": "Wfnb.agent_model"}

REPAIR_PROMPT = (
    "Your reply is not valid for the required JSON schema: {problem}\n"
    "Reply again with only the corrected JSON, and nothing else."
)


def check_endpoint(spec: AgentSpec, defaults: Sequence[AgentDefaults]) -> dict[str, str | None]:
    """``base_url``, ``model`` and ``api_key`` as found (templates not rendered yet);
    a `DefinitionError` saying where to set them when base_url or model is missing."""
    found: dict[str, str | None] = {}
    for key, env in _ENV.items():
        layers = [getattr(spec, key), *(getattr(d, key) for d in defaults)]
        found[key] = next((v for v in layers if v), None) or os.environ.get(env) or None
    missing = [key for key in ("base_url", "model") if not found[key]]
    if missing:
        where = "; ".join(
            f"{key}: set `{key}:` on the step or in the workflow's `agent:` mapping, "
            f"%config {_CONFIG[key]}, or ${_ENV[key]}"
            for key in missing
        )
        raise DefinitionError(f"the agent step has no {' and no '.join(missing)} ({where})")
    return found


async def execute(step: Step, ctx: StepContext) -> Any:
    spec = step.spec
    assert isinstance(spec, AgentSpec)
    try:
        found = check_endpoint(spec, ctx.runtime.agent_defaults())
    except DefinitionError as exc:
        raise DefinitionError(exc.reason, step_id=ctx.step_id) from None
    endpoint = ctx.render(found)
    model = str(endpoint["model"])
    name, schema, pydantic_model = _schema(spec, ctx)
    messages = []
    if spec.system is not None:
        messages.append({"role": "system", "content": _text(ctx.render(spec.system))})
    messages.append({"role": "user", "content": _text(ctx.render(spec.prompt))})
    payload: dict[str, Any] = {"model": model}
    if spec.temperature is not None:
        payload["temperature"] = spec.temperature
    if spec.max_tokens is not None:
        payload["max_tokens"] = spec.max_tokens
    if schema is not None:
        payload["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": name, "schema": schema},
        }
    headers = {"Accept": "application/json"}
    if endpoint["api_key"]:
        headers["Authorization"] = f"Bearer {endpoint['api_key']}"
    url = str(endpoint["base_url"]).rstrip("/") + "/chat/completions"

    async def ask(seq: int) -> dict[str, Any]:
        reply = await exchange(
            ctx,
            kind="agent",
            seq=seq,
            method="POST",
            url=url,
            headers=headers,
            json_body={**payload, "messages": messages},
            max_bytes=DEFAULT_MAX_BYTES,
            note=lambda r: _usage(_completion(r) or {}, model),
        )
        completion = _completion(reply)
        if completion is None:
            raise StepError(
                f"the reply of {url} is not a chat completion: {reply.text[:200]!r}",
                step_id=ctx.step_id,
            )
        return completion

    replies = [await ask(1)]
    text = _content(replies[0], ctx)
    value: Any = None
    if schema is not None:
        value, problem = _validate(text, schema, pydantic_model)
        if problem is not None:
            messages.append({"role": "assistant", "content": text})
            messages.append({"role": "user", "content": REPAIR_PROMPT.format(problem=problem)})
            replies.append(await ask(2))
            text = _content(replies[-1], ctx)
            value, problem = _validate(text, schema, pydantic_model)
            if problem is not None:
                raise StepError(
                    f"the model's reply does not match output_schema {name!r}, even after "
                    f"one repair request: {problem}",
                    step_id=ctx.step_id,
                )
    usages = [_usage(r, model) for r in replies]
    output = {
        "text": text,
        "json": value,
        "usage": {
            key: sum(u[key] or 0 for u in usages)
            for key in ("prompt_tokens", "completion_tokens", "total_tokens")
        },
        "model": usages[-1]["model"],
    }
    return hide(output, credentials_in(headers))  # a key from the environment, echoed


def _schema(spec: AgentSpec, ctx: StepContext) -> tuple[str, Any, type[BaseModel] | None]:
    """The schema's name, the JSON schema, and the pydantic model it came from."""
    target = spec.output_schema
    if target is None:
        return "output", None, None
    if isinstance(target, dict):
        try:
            jsonschema.validators.validator_for(target).check_schema(target)
        except jsonschema.SchemaError as exc:
            raise DefinitionError(
                f"output_schema is not a valid JSON schema: {exc.message}", step_id=ctx.step_id
            ) from None
        return str(target.get("title") or "output"), target, None
    found = ctx.runtime.resolve_code(target)
    if not (isinstance(found, type) and issubclass(found, BaseModel)):
        raise DefinitionError(
            f"output_schema {target!r} is a {type(found).__name__}, not a pydantic model",
            step_id=ctx.step_id,
        )
    return found.__name__, found.model_json_schema(), found


def _validate(text: str, schema: Any, model: type[BaseModel] | None) -> tuple[Any, str | None]:
    """The reply as a JSON value that fits, or the problem with it."""
    try:
        value = json.loads(_strip_fence(text))
    except ValueError as exc:
        return None, f"it is not JSON ({exc})"
    if model is not None:
        try:
            return model.model_validate(value).model_dump(mode="json"), None
        except ValidationError as exc:
            return None, "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}" for e in exc.errors()
            )
    error = jsonschema.exceptions.best_match(
        jsonschema.validators.validator_for(schema)(schema).iter_errors(value)
    )
    if error is not None:
        where = ".".join(map(str, error.absolute_path))
        return None, f"{where}: {error.message}" if where else error.message
    return value, None


def _strip_fence(text: str) -> str:
    """Some models wrap JSON in a Markdown code fence even when asked not to."""
    inner = text.strip()
    if inner.startswith("```") and inner.endswith("```"):
        inner = inner[3:-3]
        first, _, rest = inner.partition("\n")
        inner = rest if first.strip().isalpha() or not first.strip() else inner
    return inner


def _completion(reply: Reply) -> dict[str, Any] | None:
    try:
        body = json.loads(reply.text)
    except ValueError:
        return None
    return body if isinstance(body, dict) and isinstance(body.get("choices"), list) else None


def _content(completion: dict[str, Any], ctx: StepContext) -> str:
    try:
        content = completion["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise StepError(
            f"the chat completion has no message content: {str(completion)[:200]}",
            step_id=ctx.step_id,
        ) from None
    return content if isinstance(content, str) else json.dumps(content)


def _usage(completion: dict[str, Any], model: str) -> dict[str, Any]:
    """The model that answered and its token counts (None where not reported)."""
    usage = completion.get("usage")
    usage = usage if isinstance(usage, dict) else {}
    prompt, completion_tokens, total = (
        value if isinstance(value := usage.get(key), int) else None
        for key in ("prompt_tokens", "completion_tokens", "total_tokens")
    )
    if total is None and prompt is not None and completion_tokens is not None:
        total = prompt + completion_tokens
    return {
        "model": str(completion.get("model") or model),
        "prompt_tokens": prompt,
        "completion_tokens": completion_tokens,
        "total_tokens": total,
    }


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)
