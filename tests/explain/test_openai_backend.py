"""The OpenAI-compatible backend against a real chat-completions server on 127.0.0.1."""

# ruff: noqa: RUF001  (Chinese replies use full-width punctuation)

from __future__ import annotations

import base64
import io
import json
import logging
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.windows import Window

from gleam_geo.errors import ExplainerError
from gleam_geo.explain.base import Evidence, Explainer
from gleam_geo.explain.openai_backend import OpenAIExplainer

KEY = "sk-test-SECRET-0123456789"
MODEL = "test-vlm"
EVIDENCE = Evidence(
    retrieval_score=0.8123,
    inliers=120,
    putative_matches=340,
    inlier_ratio=120 / 340,
    inlier_spread=0.42,
    reprojection_rms_px=1.83,
    gsd_m=0.12,
)


@dataclass
class Reply:
    status: int = 200
    body: bytes | str | dict = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


def completion(content: str, usage: dict | None = None) -> dict:
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": MODEL,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
        ],
    }
    if usage is not None:
        body["usage"] = usage
    return body


class ChatServer:
    """A chat-completions server: records each request, answers with queued replies (the last repeats)."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.replies: list[Reply] = [Reply(body=completion('{"verdict": "same"}'))]
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length)
                server.requests.append(
                    {"path": self.path, "headers": dict(self.headers), "body": json.loads(raw)}
                )
                reply = server.replies.pop(0) if len(server.replies) > 1 else server.replies[0]
                time.sleep(reply.delay_s)
                body = reply.body
                if isinstance(body, dict):
                    body = json.dumps(body, ensure_ascii=False)
                if isinstance(body, str):
                    body = body.encode("utf-8")
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:  # the client gave up (timeout test)
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    srv = ChatServer()
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def pair(request) -> tuple[np.ndarray, np.ndarray]:
    """A real drone photo (1200x900) and a 200x150 chip of Kampala imagery."""
    data = request.getfixturevalue("shared_data")
    query = np.asarray(Image.open(data / "drone_photos_odm" / "DJI_0071.JPG").convert("RGB"))
    with rasterio.open(data / "kampala" / "kampala_z19.tif") as src:
        chip = src.read([1, 2, 3], window=Window(100, 100, 200, 150))
    return query, np.ascontiguousarray(chip.transpose(1, 2, 0))


def explainer(server: ChatServer, **kwargs) -> OpenAIExplainer:
    kwargs = {"timeout": 5.0, "max_retries": 2, "backoff_s": 0.01, "max_image_px": 256, **kwargs}
    return OpenAIExplainer(server.base_url, MODEL, KEY, **kwargs)


def assert_no_key(text: str) -> None:
    assert KEY not in text and "SECRET" not in text


def decode_data_url(url: str) -> Image.Image:
    prefix = "data:image/jpeg;base64,"
    assert url.startswith(prefix)
    image = Image.open(io.BytesIO(base64.b64decode(url[len(prefix) :])))
    assert image.format == "JPEG"
    return image


def test_request_and_good_reply(server, pair):
    usage = {"prompt_tokens": 900, "completion_tokens": 60, "total_tokens": 960}
    reply = {"verdict": "same", "confidence": 0.83, "reasoning": "The road junction and roofs line up."}
    server.replies = [Reply(body=completion(json.dumps(reply), usage))]
    backend = explainer(server)
    assert isinstance(backend, Explainer)
    result = backend.explain(*pair, EVIDENCE, "en")

    assert (result.verdict, result.confidence, result.reasoning) == (True, 0.83, reply["reasoning"])
    assert result.model == f"openai:{MODEL}" == backend.model_id
    assert result.language == "en" and result.evidence is EVIDENCE
    assert result.extra == {"usage": usage}

    (request,) = server.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == f"Bearer {KEY}"
    body = request["body"]
    assert body["model"] == MODEL and body["temperature"] == 0.0
    system, user = body["messages"]
    assert system["role"] == "system" and isinstance(system["content"], str)
    images = [decode_data_url(p["image_url"]["url"]) for p in user["content"] if p["type"] == "image_url"]
    assert [im.size for im in images] == [(256, 192), (200, 150)]  # query downscaled, chip kept
    text = " ".join(p["text"] for p in user["content"] if p["type"] == "text")
    for fact in ("120 of 340", "1.8 px", "0.81", "0.12 m/px", '"verdict"'):
        assert fact in text, fact


def test_chinese_prompt_and_free_text_reply(server, pair):
    server.replies = [Reply(body=completion("道路走向和建筑布局都对不上。\n结论：不是同一地点"))]
    result = explainer(server).explain(*pair, EVIDENCE, "zh")
    assert result.verdict is False and result.language == "zh"
    assert result.reasoning == "道路走向和建筑布局都对不上。"
    body = server.requests[0]["body"]
    text = " ".join(p["text"] for p in body["messages"][1]["content"] if p["type"] == "text")
    assert "同一地点" in text and "340 个候选中 120 个" in text and "用中文" in text
    assert "遥感" in body["messages"][0]["content"]


@pytest.mark.parametrize(
    ("content", "verdict", "confidence"),
    [
        ('```json\n{"verdict": "different", "confidence": 0.7, "reasoning": "r"}\n```', False, 0.7),
        ("The fields and the canal match.\nConfidence: 80%\nVerdict: same place", True, 0.8),
    ],
)
def test_fenced_and_free_text_replies(server, pair, content, verdict, confidence):
    server.replies = [Reply(body=completion(content))]
    result = explainer(server).explain(*pair, EVIDENCE, "en")
    assert (result.verdict, result.confidence) == (verdict, confidence)


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (Reply(body=completion("I am not able to tell.")), "no verdict"),
        (Reply(body="<html>gateway</html>"), "not JSON"),
        (Reply(body={"id": "x", "object": "chat.completion"}), "no choices"),
        (Reply(body=completion("")), "empty message content"),
    ],
)
def test_malformed_reply(server, pair, reply, message):
    server.replies = [reply]
    with pytest.raises(ExplainerError, match=message) as info:
        explainer(server).explain(*pair, EVIDENCE, "en")
    assert "malformed reply" in str(info.value) and "\n" not in str(info.value)
    assert len(server.requests) == 1  # a malformed reply is not retried


@pytest.mark.parametrize("header", [{"Retry-After": "0.3"}, {"retry-after-ms": "300"}])
def test_429_then_200_is_retried_honouring_retry_after(server, pair, header, caplog):
    server.replies = [
        Reply(429, {"error": {"message": "Rate limit reached", "type": "requests"}}, header),
        Reply(body=completion('{"verdict": "same", "confidence": 0.6, "reasoning": "r"}')),
    ]
    start = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="gleam_geo.explain.openai_backend"):
        result = explainer(server).explain(*pair, EVIDENCE, "en")
    assert time.monotonic() - start >= 0.3  # waited as asked, not just backoff_s=0.01
    assert result.verdict is True and len(server.requests) == 2
    assert "429" in caplog.text
    assert_no_key(caplog.text)


def test_persistent_500_fails_after_max_retries(server, pair):
    server.replies = [Reply(500, {"error": {"message": "internal error"}})]
    with pytest.raises(ExplainerError, match=r"failed 4 times.*HTTP 500.*internal error") as info:
        explainer(server, max_retries=3).explain(*pair, EVIDENCE, "en")
    assert len(server.requests) == 4
    assert_no_key(str(info.value))


def test_auth_error_names_the_variable_and_hides_the_key(server, pair):
    message = f"Incorrect API key provided: {KEY}. You can find your API key at platform.openai.com."
    server.replies = [Reply(401, {"error": {"message": message, "code": "invalid_api_key"}})]
    with pytest.raises(ExplainerError, match=r"authentication failed.*GLEAM_GEO_LLM_API_KEY") as info:
        explainer(server).explain(*pair, EVIDENCE, "en")
    assert_no_key(str(info.value))
    assert "\n" not in str(info.value) and len(server.requests) == 1


@pytest.mark.parametrize(
    "body",
    [
        {"error": {"message": "The model `test-vlm` does not exist", "code": "model_not_found"}},
        {"object": "error", "message": "The model `test-vlm` does not exist.", "code": 404},  # vLLM
        {"error": 'model "test-vlm" not found, try pulling it first'},  # Ollama
    ],
)
def test_unknown_model(server, pair, body):
    server.replies = [Reply(404, body)]
    with pytest.raises(ExplainerError, match=f"unknown model '{MODEL}'.*GLEAM_GEO_LLM_MODEL"):
        explainer(server).explain(*pair, EVIDENCE, "en")
    assert len(server.requests) == 1


def test_wrong_path_404_explains_the_base_url(server, pair):
    server.replies = [Reply(404, "Not Found")]
    with pytest.raises(ExplainerError, match=r"no chat-completions endpoint.*/v1"):
        explainer(server).explain(*pair, EVIDENCE, "en")


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (400, "gpt2 is not a multimodal model"),  # vLLM
        (400, "Invalid content type. image_url is only supported by certain models."),  # OpenAI
        (500, "image input is not supported - hint: you may need to provide the mmproj"),  # llama.cpp
    ],
)
def test_model_without_vision(server, pair, status, message):
    server.replies = [Reply(status, {"error": {"message": message, "type": "invalid_request_error"}})]
    with pytest.raises(ExplainerError, match=f"model '{MODEL}' does not accept images"):
        explainer(server).explain(*pair, EVIDENCE, "en")
    assert len(server.requests) == 1


def test_other_400_is_reported_not_retried(server, pair):
    server.replies = [Reply(400, {"error": {"message": "temperature must be at most 2"}})]
    with pytest.raises(ExplainerError, match=r"HTTP 400.*temperature must be at most 2"):
        explainer(server).explain(*pair, EVIDENCE, "en")
    assert len(server.requests) == 1


def test_timeout_is_retried_then_reported(server, pair):
    server.replies = [Reply(body=completion('{"verdict": "same"}'), delay_s=0.6)]
    start = time.monotonic()
    with pytest.raises(ExplainerError, match=r"failed 2 times.*no reply within 0.1 s"):
        explainer(server, timeout=0.1, max_retries=1).explain(*pair, EVIDENCE, "en")
    assert time.monotonic() - start < 0.6
    assert len(server.requests) == 2


def test_connection_refused_is_retried_then_reported(pair):
    with socket.socket() as sock:  # a port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    backend = OpenAIExplainer(f"http://127.0.0.1:{port}/v1", MODEL, KEY, max_retries=1, backoff_s=0.01)
    with pytest.raises(ExplainerError, match=r"failed 2 times.*connection failed") as info:
        backend.explain(*pair, EVIDENCE, "en")
    assert_no_key(str(info.value))


def test_no_key_means_no_authorization_header(server, pair):
    OpenAIExplainer(server.base_url, MODEL, max_image_px=64).explain(*pair, EVIDENCE, "en")
    assert "Authorization" not in server.requests[0]["headers"]


def test_repr_hides_the_key(server):
    backend = explainer(server)
    assert_no_key(repr(backend))
    assert "'***'" in repr(backend) and MODEL in repr(backend)
    assert "None" in repr(OpenAIExplainer(server.base_url, MODEL))


@pytest.mark.parametrize(
    "base_url",
    ["http://h:8000/v1", "http://h:8000/v1/", "http://h:8000/v1/chat/completions", " http://h:8000/v1 "],
)
def test_base_url_is_the_one_before_chat_completions(base_url):
    backend = OpenAIExplainer(base_url, MODEL)
    assert backend.url == "http://h:8000/v1/chat/completions"


def test_bad_settings_rejected():
    with pytest.raises(ExplainerError, match="not an http"):
        OpenAIExplainer("localhost:8000/v1", MODEL)
    with pytest.raises(ExplainerError, match="GLEAM_GEO_LLM_MODEL"):
        OpenAIExplainer("http://h/v1", " ")
    with pytest.raises(ValueError, match="max_retries"):
        OpenAIExplainer("http://h/v1", MODEL, max_retries=-1)


ENV_VARS = (
    "GLEAM_GEO_LLM_BASE_URL",
    "GLEAM_GEO_LLM_MODEL",
    "GLEAM_GEO_LLM_API_KEY",
    "OPENAI_BASE_URL",
    "OPENAI_API_KEY",
)


@pytest.fixture
def clean_env(monkeypatch):
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_from_env(clean_env, server, pair):
    clean_env.setenv("GLEAM_GEO_LLM_BASE_URL", server.base_url)
    clean_env.setenv("GLEAM_GEO_LLM_MODEL", MODEL)
    clean_env.setenv("GLEAM_GEO_LLM_API_KEY", KEY)
    clean_env.setenv("OPENAI_API_KEY", "sk-other")
    backend = OpenAIExplainer.from_env(max_image_px=64, timeout=None)
    assert backend.model_id == f"openai:{MODEL}" and backend.max_image_px == 64 and backend.timeout == 60.0
    backend.explain(*pair, EVIDENCE, "en")
    assert server.requests[0]["headers"]["Authorization"] == f"Bearer {KEY}"


def test_from_env_falls_back_to_openai_variables_and_overrides_win(clean_env):
    clean_env.setenv("OPENAI_BASE_URL", "https://api.openai.com/v1")
    clean_env.setenv("OPENAI_API_KEY", KEY)
    clean_env.setenv("GLEAM_GEO_LLM_MODEL", "gpt-4o")
    backend = OpenAIExplainer.from_env()
    assert backend.url == "https://api.openai.com/v1/chat/completions" and backend.model == "gpt-4o"
    assert backend._headers()["Authorization"] == f"Bearer {KEY}"
    assert OpenAIExplainer.from_env(model="gpt-4o-mini").model_id == "openai:gpt-4o-mini"


def test_from_env_missing_names_the_variables(clean_env):
    with pytest.raises(ExplainerError, match="GLEAM_GEO_LLM_BASE_URL and GLEAM_GEO_LLM_MODEL"):
        OpenAIExplainer.from_env()
    clean_env.setenv("GLEAM_GEO_LLM_BASE_URL", "http://h/v1")
    with pytest.raises(ExplainerError, match="set GLEAM_GEO_LLM_MODEL") as info:
        OpenAIExplainer.from_env(api_key=KEY)
    assert_no_key(str(info.value))
