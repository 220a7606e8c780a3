"""The GLEAM-X prompt (English and Chinese) and a tolerant parser for the model's reply.

:func:`chat_messages` builds backend-neutral chat messages: user content is a list of
``{"type": "text", "text": ...}`` and ``{"type": "image", "image": PIL.Image.Image}`` parts,
which the HTTP backend turns into data URLs and the transformers backend passes to
``processor.apply_chat_template``. The prompt asks for the JSON that :func:`format_reply`
writes; :func:`parse_reply` also accepts fenced or prose-wrapped JSON, key/value variants
and free text that ends in a verdict line.
"""

# Chinese prompt text and reply patterns need full-width punctuation.
# ruff: noqa: RUF001, RUF002

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image

from gleam_geo.errors import ExplainerError
from gleam_geo.explain.base import Evidence, Language, check_language

__all__ = [
    "DEFAULT_CONFIDENCE",
    "PROMPT_VERSION",
    "chat_messages",
    "evidence_facts",
    "format_reply",
    "parse_reply",
    "verdict_value",
]

#: Changes whenever the prompt text or the answer format changes (it is part of cache keys).
PROMPT_VERSION = "gleam-x-prompt-v1"

#: Confidence reported when a reply gives a verdict but no usable confidence.
DEFAULT_CONFIDENCE = 0.5

_SYSTEM = {
    "en": (
        "You are an expert in remote-sensing image interpretation. You decide whether a query "
        "image (a ground, drone or aerial photo) and a georeferenced satellite image show the "
        "same place, and you explain the decision with concrete visual features and measurements."
    ),
    "zh": (
        "你是一名遥感影像判读专家，负责判断一张查询影像（地面照片、无人机照片或航拍照片）"
        "与一张带地理坐标的卫星影像是否拍摄于同一地点，并结合具体的地物特征和测量数据说明判断依据。"
    ),
}

_INTRO = {
    "en": "Image 1 is the query image:",
    "zh": "图 1 为查询影像：",
}

_REFERENCE = {
    "en": "Image 2 is the satellite reference image:",
    "zh": "图 2 为卫星参考影像：",
}

_EVIDENCE_HEADER = {
    "en": "Measurements from the matching pipeline (they can be wrong; check them against the images):",
    "zh": "匹配流程给出的测量结果（仅供参考，可能有误，请结合影像核实）：",
}

_NO_EVIDENCE = {
    "en": "No measurements are available for this pair; judge from the images alone.",
    "zh": "这对影像没有测量数据，请仅根据影像本身判断。",
}

_TASK = {
    "en": (
        "Do the two images show the same place? Compare stable features: road layout and "
        "junctions, building footprints and roofs, field boundaries, water, vegetation "
        "patterns, and their relative positions. Allow for differences in viewpoint, scale, "
        "rotation, season and acquisition date. Do not answer 'different' by default: weigh "
        "the evidence for both answers.\n"
        "Reply with one JSON object and nothing else:\n"
        '{"verdict": "same" or "different", "confidence": a number from 0 to 1, '
        '"reasoning": "2 to 5 sentences in English citing the features and measurements you relied on"}'
    ),
    "zh": (
        "这两张影像拍摄的是同一地点吗？请比较稳定的地物特征：道路走向与路口、建筑轮廓与屋顶、"
        "田块边界、水体、植被分布，以及它们之间的相对位置。视角、比例尺、旋转、季节和拍摄时间"
        "的差异属于正常现象。不要默认回答“不同”，请权衡支持两种结论的证据。\n"
        "只输出一个 JSON 对象，不要输出其他内容：\n"
        '{"verdict": "same" 或 "different", "confidence": 0 到 1 之间的数字, '
        '"reasoning": "用中文写 2 到 5 句话，说明你所依据的地物特征和测量数据"}'
    ),
}


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def _num(x: float, digits: int = 2) -> str:
    return f"{x:.{digits}f}"


# (field, English label, Chinese label, formatter) for the fields shown when not None.
_FACTS: tuple[tuple[str, str, str, Callable[[Any], str]], ...] = (
    ("retrieval_score", "Embedding similarity (cosine, -1 to 1)", "特征相似度（余弦，-1 到 1）", _num),
    ("score_margin", "Lead over the next-best candidate", "领先次优候选的分差", _num),
    ("match_prob", "Calibrated probability that the position is right", "定位正确的校准概率", _pct),
    (
        "inlier_spread",
        "Share of the query image covered by verified matches",
        "已验证匹配点覆盖查询影像的比例",
        _pct,
    ),
    ("reprojection_rms_px", "Reprojection error (RMS)", "重投影误差（均方根）", lambda x: f"{x:.1f} px"),
    (
        "scale_ratio",
        "Scale ratio (query / reference ground resolution)",
        "比例尺之比（查询影像 / 参考影像地面分辨率）",
        _num,
    ),
    (
        "heading_deg",
        "Estimated heading of the query's top edge (clockwise from north)",
        "查询影像上方的估计方位角（自正北顺时针）",
        lambda x: f"{x:.0f}°",
    ),
    ("tilt_anisotropy", "Tilt anisotropy (1 = looking straight down)", "倾斜各向异性（1 为垂直俯视）", _num),
    ("colour_agreement", "Colour agreement after alignment (-1 to 1)", "对齐后的色彩一致性（-1 到 1）", _num),
    (
        "structure_agreement",
        "Edge-structure agreement after alignment (-1 to 1)",
        "对齐后的边缘结构一致性（-1 到 1）",
        _num,
    ),
    (
        "structure_ncc",
        "Edge-layout correlation (keypoints failed; position from the edge-layout search, -1 to 1)",
        "边缘布局相关系数（特征点未通过验证，位置来自边缘布局搜索，-1 到 1）",
        _num,
    ),
    (
        "structure_peak_ratio",
        "Edge-layout peak over the best peak elsewhere in the searched area",
        "边缘布局峰值与搜索范围内其他位置最佳峰值之比",
        _num,
    ),
    ("gsd_m", "Query ground resolution", "查询影像地面分辨率", lambda x: f"{x:.2f} m/px"),
    ("error_radius_m", "Position error radius (90%)", "定位误差半径（90%）", lambda x: f"{x:.1f} m"),
)


def evidence_facts(evidence: Evidence, language: Language) -> list[str]:
    """The evidence as readable lines with units, in ``language``; unmeasured fields omitted.

    Args:
        evidence: measurements for the pair.
        language: "en" or "zh".

    Returns:
        One line per measured fact, e.g. ``"Reprojection error (RMS): 1.8 px"``.
    """
    zh = check_language(language) == "zh"
    sep = "：" if zh else ": "
    lines = []
    if evidence.putative_matches > 0:
        ratio = _pct(evidence.inliers / evidence.putative_matches)
        if zh:
            lines.append(
                f"几何验证通过的特征匹配点{sep}"
                f"{evidence.putative_matches} 个候选中 {evidence.inliers} 个（{ratio}）"
            )
        else:
            lines.append(
                f"Geometrically verified keypoint matches{sep}{evidence.inliers} of "
                f"{evidence.putative_matches} candidates ({ratio})"
            )
    elif evidence.inliers > 0:
        label = "几何验证通过的特征匹配点" if zh else "Geometrically verified keypoint matches"
        lines.append(f"{label}{sep}{evidence.inliers}")
    for name, en, zh_label, fmt in _FACTS:
        value = getattr(evidence, name)
        if name == "inlier_spread" and evidence.inliers == 0:
            continue
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            continue
        lines.append(f"{zh_label if zh else en}{sep}{fmt(value)}")
    return lines


def _to_pil(image: np.ndarray, what: str) -> Image.Image:
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (1, 3, 4))):
        raise ValueError(
            f"{what} image must be uint8 HxW or HxWx3, got {arr.dtype} {arr.shape}: convert it with "
            "gleam_geo.images or np.clip(...).astype(np.uint8)"
        )
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    return Image.fromarray(np.ascontiguousarray(arr)).convert("RGB")


def chat_messages(
    query: np.ndarray, reference: np.ndarray, evidence: Evidence, language: Language
) -> list[dict[str, Any]]:
    """Chat messages (system + user) asking whether the two images show the same place.

    Args:
        query: the query image, RGB uint8 HxWx3 (HxW grey is accepted).
        reference: the satellite reference chip, RGB uint8 HxWx3.
        evidence: measurements for the pair, shown as readable facts.
        language: "en" or "zh": the prompt's language and the language asked for the reasoning.

    Returns:
        ``[{"role": "system", "content": str}, {"role": "user", "content": [parts]}]`` where
        each part is ``{"type": "text", "text": str}`` or ``{"type": "image", "image": PIL image}``.
    """
    lang = check_language(language)
    facts = evidence_facts(evidence, lang)
    if facts:
        evidence_text = _EVIDENCE_HEADER[lang] + "\n" + "\n".join(f"- {line}" for line in facts)
    else:
        evidence_text = _NO_EVIDENCE[lang]
    parts: list[dict[str, Any]] = [
        {"type": "text", "text": _INTRO[lang]},
        {"type": "image", "image": _to_pil(query, "query")},
        {"type": "text", "text": _REFERENCE[lang]},
        {"type": "image", "image": _to_pil(reference, "reference")},
        {"type": "text", "text": evidence_text + "\n\n" + _TASK[lang]},
    ]
    return [{"role": "system", "content": _SYSTEM[lang]}, {"role": "user", "content": parts}]


def format_reply(verdict: bool, confidence: float, reasoning: str) -> str:
    """The reply the prompt asks for, as one line of JSON (the fine-tuning target).

    Args:
        verdict: ``True`` for the same place.
        confidence: 0-1.
        reasoning: the explanation, in the prompt's language.

    Returns:
        ``{"verdict": "same"|"different", "confidence": 0.87, "reasoning": "..."}``.
    """
    if not 0.0 <= confidence <= 1.0:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    reply = {"verdict": "same" if verdict else "different", "confidence": round(confidence, 2)}
    reply["reasoning"] = reasoning.strip()
    return json.dumps(reply, ensure_ascii=False)


# --- parsing ---------------------------------------------------------------------------

_VERDICT_KEYS = ("verdict", "same_place", "is_same_place", "same", "match", "is_match", "answer",
                 "conclusion", "decision", "结论", "判断", "判定", "是否同一地点")  # fmt: skip
_CONFIDENCE_KEYS = ("confidence", "probability", "certainty", "置信度", "信心", "可信度", "概率")
_REASONING_KEYS = ("reasoning", "reason", "explanation", "rationale", "analysis",
                   "理由", "推理", "解释", "分析", "依据")  # fmt: skip

_UNDECIDED = re.compile(r"uncertain|unclear|cannot (?:tell|determine)|can't tell|无法判断|无法确定|不确定")
_EN_NO = re.compile(
    r"^(?:no|n|false|mismatch\w*)\b|\b(?:different|differ|differs|distinct|unrelated|mismatch\w*)\b"
    r"|(?:\bnot|n't|\bnever)\W+(?:\w+\W+){0,2}?(?:same|match\w*|identical)\b"
)
_EN_YES = re.compile(r"^y\b|\b(?:yes|true|same|match\w*|identical)\b")
_ZH_NO = ("不是", "不同", "不一致", "不匹配", "并非", "非同一", "否", "不相同")
_ZH_YES = ("是", "相同", "同一", "一致", "匹配")
_ZH_LEVELS = {"高": 0.9, "较高": 0.75, "中": 0.6, "中等": 0.6, "较低": 0.4, "低": 0.3}
_EN_LEVELS = {"very high": 0.95, "high": 0.9, "medium": 0.6, "moderate": 0.6, "low": 0.3, "very low": 0.1}

_THINK = re.compile(r"<think>.*?</think>", re.S | re.I)
_FENCE = re.compile(r"```[a-zA-Z]*\s*(.*?)```", re.S)
_KEY_LINE = r"^[\s>*_#\-]*(?:final\s+)?(?:{keys})[\s*_]*[:：=][\s*_\"']*(?P<value>.+?)\s*$"
_VERDICT_LINE = re.compile(
    _KEY_LINE.format(keys=r"verdict|conclusion|answer|decision|same place|最终结论|结论|判断|判定|结果"),
    re.I | re.M,
)
_BARE_VERDICT = re.compile(
    r"^(?:(?:the\s+)?same(?:\s+(?:place|location))?|match|yes|no|no match|mismatch"
    r"|different(?:\s+(?:places?|locations?))?|not\s+the\s+same(?:\s+(?:place|location))?"
    r"|是|否|相同|不同|同一地点|是同一地点|不是同一地点|不同地点|非同一地点)$"
)
_CONFIDENCE_LINE = re.compile(_KEY_LINE.format(keys=r"confidence|置信度|可信度|信心"), re.I | re.M)
_REASONING_LINE = re.compile(
    r"^[\s>*_#\-]*(?:reasoning|reason|explanation|rationale|理由|推理|解释|分析)[\s*_]*[:：]\s*", re.I | re.M
)


def verdict_value(value: Any) -> bool | None:
    """Read a verdict from a JSON value or a short phrase; ``None`` when it is not one.

    Accepts booleans, 1/0, and phrases such as "same", "same place", "match", "yes",
    "different", "not the same place", "是", "否", "相同", "不同", "同一地点", "不是同一地点".
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return True if value == 1 else False if value == 0 else None
    if not isinstance(value, str):
        return None
    text = value.strip().lower().replace("是否", "")
    if _UNDECIDED.search(text):
        return None
    if any(neg in text for neg in _ZH_NO) or _EN_NO.search(text):
        return False
    if any(yes in text for yes in _ZH_YES) or _EN_YES.search(text):
        return True
    return None


def _confidence_value(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip().lower().strip("\"'*_.。 ")
        for table in (_EN_LEVELS, _ZH_LEVELS):
            if text in table:
                return table[text]
        match = re.search(r"-?\d+(?:\.\d+)?", text)
        if match is None:
            return None
        number = float(match.group())
        percent = "%" in text[match.end() :] or "％" in text[match.end() :]
        value = number / 100 if percent else number
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    if 0 <= value <= 1:
        return float(value)
    if 1 < value <= 100:
        return float(value) / 100
    return None


def _lookup(obj: dict[str, Any], keys: tuple[str, ...]) -> Any:
    lowered = {str(k).strip().lower(): v for k, v in obj.items()}
    for key in keys:
        if key in lowered:
            return lowered[key]
    return None


def _json_objects(text: str) -> list[dict[str, Any]]:
    """Every JSON object in ``text``: inside ``` fences first, then anywhere in the prose."""
    decoder = json.JSONDecoder()
    found: list[dict[str, Any]] = []
    for chunk in [*_FENCE.findall(text), text]:
        start = chunk.find("{")
        while start != -1:
            try:
                obj, end = decoder.raw_decode(chunk, start)
            except json.JSONDecodeError:
                start = chunk.find("{", start + 1)
                continue
            if isinstance(obj, dict):
                found.append(obj)
            start = chunk.find("{", end)
    return found


def _from_json(text: str) -> tuple[bool, float, str] | None:
    for obj in _json_objects(text):
        verdict = verdict_value(_lookup(obj, _VERDICT_KEYS))
        if verdict is None:
            continue
        confidence = _confidence_value(_lookup(obj, _CONFIDENCE_KEYS))
        reasoning = _lookup(obj, _REASONING_KEYS)
        if not isinstance(reasoning, str):
            reasoning = "" if reasoning is None else json.dumps(reasoning, ensure_ascii=False)
        return verdict, DEFAULT_CONFIDENCE if confidence is None else confidence, reasoning.strip()
    return None


def _from_text(text: str) -> tuple[bool, float, str] | None:
    matches = [(m, verdict_value(m.group("value"))) for m in _VERDICT_LINE.finditer(text)]
    matches = [(m, v) for m, v in matches if v is not None]
    if matches:
        match, verdict = matches[-1]
        start, end = match.span()
    else:  # a last line that is nothing but a verdict ("Same place.", "不是同一地点。")
        lines = text.rstrip().splitlines()
        if not lines:
            return None
        last = lines[-1].strip().strip("*_#>.。!！ ").lower()
        if not _BARE_VERDICT.match(last):
            return None
        verdict = verdict_value(last)
        end = len(text.rstrip())
        start = end - len(lines[-1])
    conf_match = None
    for m in _CONFIDENCE_LINE.finditer(text):
        if _confidence_value(m.group("value")) is not None:
            conf_match = m
    confidence = _confidence_value(conf_match.group("value")) if conf_match else None
    spans = sorted([(start, end)] + ([conf_match.span()] if conf_match else []))
    kept, pos = [], 0
    for s, e in spans:
        kept.append(text[pos:s])
        pos = e
    kept.append(text[pos:])
    reasoning = _REASONING_LINE.sub("", "".join(kept)).strip()
    return bool(verdict), DEFAULT_CONFIDENCE if confidence is None else confidence, reasoning


def parse_reply(text: str) -> tuple[bool, float, str]:
    """Read the verdict, confidence and reasoning from a model's reply.

    Accepts the JSON the prompt asks for, also inside ``` fences or surrounded by prose, with
    key and value variants (verdict as true/false, yes/no, same/different, match, 是/否,
    相同/不同, 同一地点/不是同一地点; confidence as 0-1, a percentage or a string), and free
    text that ends in a verdict line such as "Verdict: same place" or "结论：不是同一地点".
    ``<think>`` blocks are ignored. A missing or unreadable confidence gives
    :data:`DEFAULT_CONFIDENCE`.

    Args:
        text: the model's reply.

    Returns:
        ``(verdict, confidence, reasoning)``: ``verdict`` is ``True`` for the same place.

    Raises:
        ExplainerError: when no verdict can be found.
    """
    cleaned = _THINK.sub("", text or "").strip()
    result = _from_json(cleaned) or _from_text(cleaned)
    if result is None:
        snippet = " ".join(cleaned.split())[:80]
        raise ExplainerError(
            f"no verdict found in the model's reply ({snippet!r}): the model must answer with JSON "
            '{"verdict": "same"|"different", ...} or end with a line "Verdict: same place"; '
            "use temperature 0 or a stronger model"
        )
    return result
