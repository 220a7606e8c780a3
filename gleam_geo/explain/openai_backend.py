"""GLEAM-X over an OpenAI-compatible chat-completions endpoint (standard library HTTP only).

One backend covers OpenAI (GPT-4o), Doubao through Volcengine Ark, vLLM, SGLang, Ollama and
the llama.cpp server. The base URL is the one that precedes ``/chat/completions``, as in the
OpenAI SDK: ``https://api.openai.com/v1``, ``https://ark.cn-beijing.volces.com/api/v3``,
``http://localhost:8000/v1``. The API key is sent only in the ``Authorization`` header; it
never appears in errors, logs or ``repr``.
"""

from __future__ import annotations

import base64
import email.utils
import http.client
import io
import json
import logging
import os
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from email.message import Message
from typing import Any

import numpy as np
from PIL import Image

from gleam_geo._version import __version__
from gleam_geo.errors import ExplainerError
from gleam_geo.explain.base import Evidence, Explanation, Language, check_language
from gleam_geo.explain.prompt import chat_messages, parse_reply

__all__ = ["OpenAIExplainer"]

log = logging.getLogger(__name__)

#: The longest wait between two attempts, whatever the server's Retry-After says.
MAX_WAIT_S = 60.0
_VISION_WORDS = ("image", "vision", "multimodal", "multi-modal", "mmproj")


def _redact(text: str, secret: str | None) -> str:
    """``text`` on one line, at most 200 characters, with ``secret`` masked."""
    if secret:
        text = text.replace(secret, "***")
    text = " ".join(text.split())
    return text if len(text) <= 200 else text[:197] + "..."


def _error_detail(raw: bytes) -> tuple[str, str]:
    """(message, code) from an error body: OpenAI, vLLM, Ollama, Ark and FastAPI shapes."""
    text = raw.decode("utf-8", "replace")
    try:
        body = json.loads(text)
    except json.JSONDecodeError:
        return text, ""
    if not isinstance(body, dict):
        return text, ""
    error = body.get("error", body)
    if isinstance(error, str):
        return error, str(body.get("code") or "")
    if not isinstance(error, dict):
        return text, ""
    message = error.get("message") or error.get("detail") or text
    return str(message), str(error.get("code") or error.get("type") or "")


def _retry_after(headers: Message | None) -> float | None:
    """Seconds the server asks us to wait (``retry-after-ms`` or ``Retry-After``), if any."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def _data_url(image: Image.Image, max_px: int) -> str:
    """``image`` as a base64 JPEG data URL, downscaled so its longest side is <= ``max_px``."""
    image = image.convert("RGB")
    if max(image.size) > max_px:
        image = image.copy()
        image.thumbnail((max_px, max_px), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


class OpenAIExplainer:
    """Explain a pair with a vision model behind an OpenAI-compatible chat-completions API.

    Args:
        base_url: the URL that precedes ``/chat/completions`` (like the OpenAI SDK's), e.g.
            ``https://api.openai.com/v1`` or ``http://localhost:8000/v1``. A URL that already
            ends in ``/chat/completions`` is accepted.
        model: the model name the server knows, e.g. ``"gpt-4o"``.
        api_key: sent as ``Authorization: Bearer ...``; ``None`` for local servers.
        timeout: seconds to wait for the connection and for each read.
        max_retries: retries after the first attempt on 429, 5xx, connection errors and
            timeouts (``max_retries + 1`` attempts in all).
        backoff_s: wait before the first retry, doubled at each retry (a longer Retry-After
            from the server wins; no wait is longer than :data:`MAX_WAIT_S`).
        max_image_px: images are downscaled so their longest side is at most this.
        temperature: sampling temperature; ``None`` leaves it to the server.
        extra_headers: more HTTP headers (e.g. an organisation or project id).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        max_retries: int = 4,
        backoff_s: float = 1.0,
        max_image_px: int = 768,
        temperature: float | None = 0.0,
        extra_headers: dict[str, str] | None = None,
    ) -> None:
        base = (base_url or "").strip().rstrip("/")
        base = base.removesuffix("/chat/completions")
        if not base.startswith(("http://", "https://")):
            raise ExplainerError(
                f"base URL {base_url!r} is not an http(s) URL: set GLEAM_GEO_LLM_BASE_URL to e.g. "
                "https://api.openai.com/v1 or http://localhost:8000/v1"
            )
        if not model or not model.strip():
            raise ExplainerError("no model name given: set GLEAM_GEO_LLM_MODEL, e.g. gpt-4o")
        if timeout <= 0 or max_retries < 0 or backoff_s < 0 or max_image_px < 32:
            raise ValueError(
                "need timeout > 0, max_retries >= 0, backoff_s >= 0 and max_image_px >= 32, got "
                f"{timeout}, {max_retries}, {backoff_s}, {max_image_px}"
            )
        self.base_url = base
        self.model = model.strip()
        self.model_id = f"openai:{self.model}"
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.backoff_s = float(backoff_s)
        self.max_image_px = int(max_image_px)
        self.temperature = temperature
        self._api_key = api_key or None
        self._extra_headers = dict(extra_headers or {})

    @classmethod
    def from_env(cls, **overrides: Any) -> OpenAIExplainer:
        """Build from the environment; keyword arguments (``None`` ignored) take precedence.

        Reads ``GLEAM_GEO_LLM_BASE_URL``, ``GLEAM_GEO_LLM_MODEL`` and ``GLEAM_GEO_LLM_API_KEY``,
        falling back to ``OPENAI_BASE_URL`` and ``OPENAI_API_KEY``.

        Raises:
            ExplainerError: when no base URL or no model is set.
        """
        given = {k: v for k, v in overrides.items() if v is not None}
        env = os.environ
        base_url = (
            given.pop("base_url", None) or env.get("GLEAM_GEO_LLM_BASE_URL") or env.get("OPENAI_BASE_URL")
        )
        model = given.pop("model", None) or env.get("GLEAM_GEO_LLM_MODEL")
        api_key = given.pop("api_key", None) or env.get("GLEAM_GEO_LLM_API_KEY") or env.get("OPENAI_API_KEY")
        if not base_url or not model:
            missing = [
                name
                for name, value in (("GLEAM_GEO_LLM_BASE_URL", base_url), ("GLEAM_GEO_LLM_MODEL", model))
                if not value
            ]
            raise ExplainerError(
                f"the OpenAI-compatible explainer is not configured: set {' and '.join(missing)} "
                "(e.g. https://api.openai.com/v1 and gpt-4o), and GLEAM_GEO_LLM_API_KEY if the server "
                "needs one"
            )
        return cls(base_url, model, api_key, **given)

    @property
    def url(self) -> str:
        """The chat-completions endpoint."""
        return f"{self.base_url}/chat/completions"

    def __repr__(self) -> str:
        key = "'***'" if self._api_key else "None"
        return (
            f"OpenAIExplainer(base_url={self.base_url!r}, model={self.model!r}, api_key={key}, "
            f"timeout={self.timeout}, max_retries={self.max_retries})"
        )

    def explain(
        self, query: np.ndarray, reference: np.ndarray, evidence: Evidence, language: Language
    ) -> Explanation:
        """Ask the model whether ``query`` shows the place in ``reference``.

        Args:
            query: the query image, RGB uint8 HxWx3.
            reference: the satellite reference chip, RGB uint8 HxWx3.
            evidence: measurements for the pair, shown to the model.
            language: "en" or "zh", the language of the reasoning.

        Returns:
            The model's verdict, confidence and reasoning; ``extra["usage"]`` holds the
            server's token counts when it reports them.

        Raises:
            ExplainerError: on auth failure, unknown model, a model without vision, a reply
                without a verdict, or when the retries are used up.
        """
        lang = check_language(language)
        body = self._post(self.request_body(chat_messages(query, reference, evidence, lang)))
        content = self._content(body)
        try:
            verdict, confidence, reasoning = parse_reply(content)
        except ExplainerError as exc:
            raise ExplainerError(f"malformed reply from model {self.model!r}: {exc}") from None
        usage = body.get("usage")
        return Explanation(
            verdict=verdict,
            confidence=confidence,
            reasoning=reasoning,
            language=lang,
            model=self.model_id,
            evidence=evidence,
            extra={"usage": usage} if isinstance(usage, dict) else {},
        )

    def request_body(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        """The JSON request for ``messages`` from :func:`~gleam_geo.explain.prompt.chat_messages`.

        Image parts become ``{"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,..."}}``.
        """
        converted = []
        for message in messages:
            content = message["content"]
            if isinstance(content, list):
                content = [
                    {"type": "image_url", "image_url": {"url": _data_url(part["image"], self.max_image_px)}}
                    if part["type"] == "image"
                    else part
                    for part in content
                ]
            converted.append({"role": message["role"], "content": content})
        body: dict[str, Any] = {"model": self.model, "messages": converted}
        if self.temperature is not None:
            body["temperature"] = self.temperature
        return body

    def _headers(self) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": f"gleam-geo/{__version__}",
            **self._extra_headers,
        }
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST ``body``, retrying on 429, 5xx, connection errors and timeouts."""
        data = json.dumps(body).encode("utf-8")
        attempts = self.max_retries + 1
        failure = ""
        last_exc: BaseException | None = None
        for attempt in range(attempts):
            request = urllib.request.Request(self.url, data=data, headers=self._headers(), method="POST")
            retry_after = None
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    raw = response.read()
                return self._decode(raw)
            except urllib.error.HTTPError as exc:
                try:
                    raw = exc.read() if exc.fp is not None else b""
                except (OSError, http.client.HTTPException):  # the error body itself timed out
                    raw = b""
                self._raise_unless_retryable(exc.code, raw)
                message, _ = _error_detail(raw)
                label = "rate limited" if exc.code == 429 else "server error"
                failure = f"{label} (HTTP {exc.code}): {_redact(message, self._api_key)}"
                retry_after = _retry_after(exc.headers)
            except (OSError, http.client.HTTPException) as exc:
                reason = getattr(exc, "reason", exc)
                if isinstance(reason, TimeoutError):
                    failure = f"no reply within {self.timeout:g} s"
                else:
                    failure = f"connection failed ({_redact(str(reason), self._api_key)})"
                last_exc = exc
            if attempt + 1 < attempts:
                wait = min(MAX_WAIT_S, max(self.backoff_s * 2**attempt, retry_after or 0.0))
                log.warning(
                    "%s from %s; retry %d/%d in %.2f s",
                    failure,
                    self.url,
                    attempt + 1,
                    self.max_retries,
                    wait,
                )
                time.sleep(wait)
        raise ExplainerError(
            f"{self.url} failed {attempts} times, last with {failure}: check the server and "
            "GLEAM_GEO_LLM_BASE_URL, or wait and retry (raise max_retries or timeout if it is busy)"
        ) from last_exc

    def _raise_unless_retryable(self, status: int, raw: bytes) -> None:
        """Raise the matching one-line error for an HTTP status that retrying will not fix."""
        message, code = _error_detail(raw)
        detail = _redact(message, self._api_key)
        lowered = f"{message} {code}".lower()
        mentions_vision = any(word in lowered for word in _VISION_WORDS)
        if status in (401, 403):
            raise ExplainerError(
                f"authentication failed (HTTP {status}) at {self.url}: {detail}: check GLEAM_GEO_LLM_API_KEY"
            )
        if status == 404 or "model_not_found" in lowered or "does not exist" in lowered:
            if "model" in lowered:
                raise ExplainerError(
                    f"unknown model {self.model!r} at {self.base_url} ({detail}): check GLEAM_GEO_LLM_MODEL "
                    f"against GET {self.base_url}/models"
                )
            if status == 404:
                raise ExplainerError(
                    f"no chat-completions endpoint at {self.url} (HTTP 404): the base URL must be the one "
                    "before /chat/completions, usually ending in /v1 (e.g. http://localhost:8000/v1)"
                )
        # llama.cpp answers 500 to an image for a model loaded without its mmproj
        no_vision = mentions_vision and (400 <= status < 500 or "not supported" in lowered)
        if no_vision and status != 429:
            raise ExplainerError(
                f"model {self.model!r} does not accept images ({detail}): use a vision model such as "
                "gpt-4o, doubao-1.5-vision-pro or qwen2.5-vl"
            )
        if status != 429 and status < 500:
            raise ExplainerError(f"request rejected (HTTP {status}) by {self.url}: {detail}")

    def _decode(self, raw: bytes) -> dict[str, Any]:
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            snippet = _redact(raw[:120].decode("utf-8", "replace"), self._api_key)
            raise ExplainerError(
                f"malformed reply from {self.url}: not JSON ({snippet!r}): check that the base URL "
                "points at an OpenAI-compatible API"
            ) from None
        if not isinstance(body, dict):
            raise ExplainerError(f"malformed reply from {self.url}: expected a JSON object")
        return body

    def _content(self, body: dict[str, Any]) -> str:
        """The text of the first choice's message."""
        choices = body.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            if "error" in body:
                message, _ = _error_detail(json.dumps(body).encode())
                detail = _redact(message, self._api_key)
            else:
                detail = f"keys {sorted(body)}"
            raise ExplainerError(f"malformed reply from {self.url}: no choices ({detail})")
        message = choices[0].get("message") or {}
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):  # some servers return content parts
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        if not isinstance(content, str) or not content.strip():
            finish = choices[0].get("finish_reason")
            raise ExplainerError(
                f"malformed reply from {self.url}: empty message content (finish_reason={finish!r})"
            )
        return content
