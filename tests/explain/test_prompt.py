"""The GLEAM-X prompt and the reply parser."""

# ruff: noqa: RUF001  (Chinese replies use full-width punctuation)

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from gleam_geo.errors import ExplainerError
from gleam_geo.explain.base import Evidence
from gleam_geo.explain.prompt import (
    DEFAULT_CONFIDENCE,
    PROMPT_VERSION,
    chat_messages,
    evidence_facts,
    format_reply,
    parse_reply,
    verdict_value,
)

EVIDENCE = Evidence(
    retrieval_score=0.8123,
    match_prob=0.87,
    inliers=120,
    putative_matches=340,
    inlier_ratio=120 / 340,
    inlier_spread=0.42,
    reprojection_rms_px=1.83,
    heading_deg=35.2,
    gsd_m=0.12,
    error_radius_m=8.46,
)


def _images() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return (
        rng.integers(0, 256, (30, 40, 3), dtype=np.uint8),
        rng.integers(0, 256, (20, 25, 3), dtype=np.uint8),
    )


def _user_text(messages: list[dict]) -> str:
    return "\n".join(p["text"] for p in messages[1]["content"] if p["type"] == "text")


def test_prompt_version_is_a_nonempty_string():
    assert isinstance(PROMPT_VERSION, str) and PROMPT_VERSION


def test_chat_messages_shape_and_images():
    query, reference = _images()
    messages = chat_messages(query, reference, EVIDENCE, "en")
    assert [m["role"] for m in messages] == ["system", "user"]
    assert isinstance(messages[0]["content"], str) and "satellite" in messages[0]["content"]
    parts = messages[1]["content"]
    assert {p["type"] for p in parts} == {"text", "image"}
    images = [p["image"] for p in parts if p["type"] == "image"]
    assert [im.size for im in images] == [(40, 30), (25, 20)]
    assert all(isinstance(im, Image.Image) and im.mode == "RGB" for im in images)
    np.testing.assert_array_equal(np.asarray(images[0]), query)
    # the query comes first, introduced by text
    assert parts[0]["type"] == "text" and parts[1]["type"] == "image"


def test_evidence_shown_with_units_and_none_omitted():
    query, reference = _images()
    text = _user_text(chat_messages(query, reference, EVIDENCE, "en"))
    for fact in ("120 of 340", "35%", "0.81", "87%", "42%", "1.8 px", "35°", "0.12 m/px", "8.5 m"):
        assert fact in text, fact
    for unmeasured in ("Colour agreement", "Tilt anisotropy", "Scale ratio", "next-best"):
        assert unmeasured not in text
    assert '"verdict"' in text and '"confidence"' in text and '"reasoning"' in text
    assert "in English" in text


def test_chinese_prompt():
    query, reference = _images()
    messages = chat_messages(query, reference, EVIDENCE, "zh")
    text = _user_text(messages)
    assert "同一地点" in text and "用中文" in text
    assert "340 个候选中 120 个" in text and "1.8 px" in text
    assert "遥感" in messages[0]["content"]
    assert "satellite" not in text


def test_no_evidence_says_so():
    query, reference = _images()
    assert evidence_facts(Evidence(), "en") == []
    assert "No measurements" in _user_text(chat_messages(query, reference, Evidence(), "en"))
    assert "没有测量数据" in _user_text(chat_messages(query, reference, Evidence(), "zh"))


def test_grey_image_accepted_and_bad_inputs_rejected():
    grey = np.zeros((10, 12), np.uint8)
    messages = chat_messages(grey, grey, EVIDENCE, "en")
    assert messages[1]["content"][1]["image"].mode == "RGB"
    with pytest.raises(ValueError, match="uint8"):
        chat_messages(np.zeros((10, 10, 3), np.float32), grey, EVIDENCE, "en")
    with pytest.raises(ValueError, match="unknown language"):
        chat_messages(grey, grey, EVIDENCE, "fr")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("reply", "verdict", "confidence", "reasoning"),
    [
        ('{"verdict": "same", "confidence": 0.82, "reasoning": "Roads align."}', True, 0.82, "Roads align."),
        ('```json\n{"verdict": "different", "confidence": "85%", "reasoning": "x"}\n```', False, 0.85, "x"),
        (
            'Here you go: {"verdict": "same place", "confidence": 90, "reasoning": "r"} Hope it helps.',
            True,
            0.9,
            "r",
        ),
        ('{"Verdict": true, "Confidence": "0.7", "Explanation": "e"}', True, 0.7, "e"),
        ('{"match": "no", "probability": 0.2, "reason": "r"}', False, 0.2, "r"),
        ('{"verdict": "yes", "confidence": "high"}', True, 0.9, ""),
        ('{"verdict": false, "confidence": 150, "reasoning": "r"}', False, DEFAULT_CONFIDENCE, "r"),
        ('{"结论": "是", "置信度": "80%", "理由": "道路走向一致。"}', True, 0.8, "道路走向一致。"),
        (
            '{"verdict": "不是同一地点", "confidence": 0.6, "reasoning": "屋顶不同。"}',
            False,
            0.6,
            "屋顶不同。",
        ),
        ('{"verdict": "相同", "confidence": 0.9, "reasoning": "r"}', True, 0.9, "r"),
        (
            "The road grid lines up with the chip.\nConfidence: 75%\nVerdict: same place",
            True,
            0.75,
            "road grid",
        ),
        ("Roofs differ.\n**Final verdict:** Not the same place.", False, DEFAULT_CONFIDENCE, "Roofs differ."),
        ("道路和河流的位置都对得上。\n置信度：0.9\n结论：同一地点", True, 0.9, "道路和河流"),
        ("建筑布局完全不同。\n结论：不是同一地点", False, DEFAULT_CONFIDENCE, "建筑布局"),
        ("Everything lines up.\n\nSame place.", True, DEFAULT_CONFIDENCE, "Everything lines up."),
        ('<think>Verdict: same</think>{"verdict": "different", "confidence": 0.4}', False, 0.4, ""),
    ],
)
def test_parse_reply(reply, verdict, confidence, reasoning):
    got_verdict, got_confidence, got_reasoning = parse_reply(reply)
    assert got_verdict is verdict
    assert got_confidence == pytest.approx(confidence)
    assert reasoning in got_reasoning
    assert "Verdict" not in got_reasoning and "结论" not in got_reasoning


@pytest.mark.parametrize(
    ("value", "verdict"),
    [
        (True, True),
        (0, False),
        ("Same place", True),
        ("y", True),
        ("match", True),
        ("There is no doubt they show the same place", True),
        ("No", False),
        ("no match", False),
        ("not the same place", False),
        ("they don't match", False),
        ("different places", False),
        ("是", True),
        ("同一地点", True),
        ("否", False),
        ("不同", False),
        ("不是同一地点", False),
        ("无法判断是否同一地点", None),
        ("uncertain", None),
        ("maybe", None),
        (0.5, None),
    ],
)
def test_verdict_value(value, verdict):
    assert verdict_value(value) is verdict


@pytest.mark.parametrize(
    "reply",
    [
        "",
        "I cannot tell from these images.",
        "Verdict: uncertain",
        "I am not able to tell.",
        '{"confidence": 0.9, "reasoning": "no verdict key"}',
    ],
)
def test_parse_reply_without_verdict_raises_one_line(reply):
    with pytest.raises(ExplainerError, match="no verdict") as info:
        parse_reply(reply)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("verdict", "confidence", "reasoning"),
    [(True, 0.876, "The roads and the river bend line up."), (False, 0.1, "屋顶颜色和道路走向都对不上。")],
)
def test_format_reply_round_trips(verdict, confidence, reasoning):
    reply = format_reply(verdict, confidence, reasoning)
    body = json.loads(reply)
    assert body == {
        "verdict": "same" if verdict else "different",
        "confidence": round(confidence, 2),
        "reasoning": reasoning,
    }
    assert reasoning in reply  # Chinese kept readable, not \u-escaped
    assert parse_reply(reply) == (verdict, round(confidence, 2), reasoning)


def test_format_reply_rejects_bad_confidence():
    with pytest.raises(ValueError, match="between 0 and 1"):
        format_reply(True, 1.5, "x")
