"""Ollama's native API over `requests`: POST /api/chat streams NDJSON, GET /api/tags lists models.

Each line is a JSON object; the last one has `"done": true` and the counts
(`prompt_eval_count`, `eval_count`). A `{"error": "..."}` line can arrive under HTTP 200.
Redirects are never followed (`allow_redirects=False` on every call): a 3xx is an error.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import requests
from urllib3.exceptions import ProtocolError, ReadTimeoutError

from shared.providers._http import (
    CONNECT_TIMEOUT_CAP,
    MAX_CONNECTIONS,
    GuardedHTTPAdapter,
    error_fields,
    map_http_error,
    parse_retry_after,
    redact,
    reported_count,
)
from shared.providers.base import (
    BaseProvider,
    Message,
    ProviderConfig,
    StreamEnd,
    StreamEvent,
    TextDelta,
    UsageReport,
    merge_usage,
)
from shared.providers.endpoints import (
    UnsafeEndpoint,
    endpoint_refused,
    private_endpoints_allowed,
)
from shared.providers.errors import (
    MalformedChunk,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    StreamInterrupted,
)

DEFAULT_ENDPOINT = "http://localhost:11434"


class OllamaProvider(BaseProvider):
    name = "ollama"
    display_name = "Ollama"

    def __init__(self, config: ProviderConfig) -> None:
        super().__init__(config)
        self._base = (config.api_endpoint or DEFAULT_ENDPOINT).rstrip("/")
        self._secret = config.api_key.get_secret_value() if config.api_key else None
        self._session = requests.Session()
        # requests' default pool keeps 10 connections per host; a gevent worker holds hundreds.
        # The guard checks the host's addresses on every new connection (SSRF, DNS rebinding).
        adapter = GuardedHTTPAdapter(
            allow_private=private_endpoints_allowed(),
            pool_connections=4,
            pool_maxsize=MAX_CONNECTIONS,
            max_retries=0,
        )
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        if self._secret:
            # Ollama itself has no auth; a reverse proxy in front of it often does.
            self._session.headers["Authorization"] = f"Bearer {self._secret}"
        self._timeout = (min(config.timeout, CONNECT_TIMEOUT_CAP), config.timeout)

    def _stream(
        self,
        messages: list[Message],
        model: str,
        temperature: float | None,
        max_tokens: int | None,
        stop: list[str] | None = None,
    ) -> Iterator[StreamEvent]:
        options: dict[str, Any] = {
            "temperature": self.config.temperature if temperature is None else temperature
        }
        limit = max_tokens if max_tokens is not None else self.config.max_tokens
        if limit is not None:
            options["num_predict"] = limit
        if stop:
            options["stop"] = stop
        body = {
            "model": model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "stream": True,
            "options": options,
        }
        name = self.config.name
        try:
            response = self._session.post(
                f"{self._base}/api/chat",
                json=body,
                stream=True,
                timeout=self._timeout,
                allow_redirects=False,
            )
        except UnsafeEndpoint as exc:
            raise endpoint_refused(exc, name) from None
        except requests.Timeout:
            raise ProviderTimeout(
                f"timed out after {self.config.timeout:g}s", provider=name
            ) from None
        except requests.RequestException as exc:
            raise ProviderUnavailable(
                f"could not connect ({type(exc).__name__})", provider=name
            ) from None

        with response:
            if response.status_code >= 300:
                raise self._status_error(response)
            text_parts: list[str] = []
            try:
                for line in response.iter_lines():
                    if not line:
                        continue
                    try:
                        data = json.loads(line)
                    except ValueError:
                        data = None
                    if not isinstance(data, dict):
                        raise MalformedChunk(
                            "malformed NDJSON line (not a JSON object)", provider=name
                        )
                    if data.get("error"):
                        message, error_type, code = error_fields(data)
                        raise map_http_error(
                            name,
                            None,
                            message,
                            error_type=error_type,
                            code=code,
                            secret=self._secret,
                        )
                    text = (data.get("message") or {}).get("content") or ""
                    if text:
                        text_parts.append(text)
                        yield TextDelta(text)
                    if data.get("done"):
                        # Ollama omits prompt_eval_count when the whole prompt came from its
                        # cache: that count is then estimated, the other one kept.
                        reported = UsageReport(
                            reported_count(data.get("prompt_eval_count")),
                            reported_count(data.get("eval_count")),
                        )
                        if reported != UsageReport():
                            yield reported
                        yield StreamEnd(
                            merge_usage(reported, messages, "".join(text_parts)),
                            finish_reason=data.get("done_reason") or "stop",
                        )
                        return
            except requests.RequestException as exc:
                raise _mid_stream_error(exc, name, self.config.timeout) from None
        raise StreamInterrupted("stream ended without done:true", provider=name)

    def _status_error(self, response: requests.Response) -> ProviderError:
        try:
            body: object = response.json()
        except ValueError:
            body = response.text[:500]
        message, error_type, code = error_fields(body)
        return map_http_error(
            self.config.name,
            response.status_code,
            message or response.reason or "",
            error_type=error_type,
            code=code,
            retry_after=parse_retry_after(response.headers),
            secret=self._secret,
        )

    def list_models(self) -> list[dict[str, Any]]:
        try:
            response = self._session.get(
                f"{self._base}/api/tags", timeout=self._timeout, allow_redirects=False
            )
        except UnsafeEndpoint as exc:
            raise endpoint_refused(exc, self.config.name) from None
        except requests.Timeout:
            raise ProviderTimeout("timed out listing models", provider=self.config.name) from None
        except requests.RequestException as exc:
            raise ProviderUnavailable(
                redact(f"could not connect ({type(exc).__name__})"), provider=self.config.name
            ) from None
        if response.status_code >= 300:
            raise self._status_error(response)
        return [
            {"id": m.get("name") or m.get("model"), "details": m.get("details") or {}}
            for m in response.json().get("models", [])
        ]

    def release_resources(self) -> None:
        self._session.close()


def _mid_stream_error(
    exc: requests.RequestException, provider: str, timeout: float
) -> ProviderError:
    # requests wraps urllib3's read timeout inside a ConnectionError while iterating.
    cause = exc.args[0] if exc.args else None
    if isinstance(exc, requests.Timeout) or isinstance(cause, ReadTimeoutError):
        return ProviderTimeout(f"no data for {timeout:g}s mid-stream", provider=provider)
    if isinstance(cause, ProtocolError):
        return StreamInterrupted("connection lost mid-stream", provider=provider)
    return StreamInterrupted(
        f"connection lost mid-stream ({type(exc).__name__})", provider=provider
    )
