"""A tiny, randomly initialised Qwen2.5-VL saved on disk, built offline for tests.

It has the real architecture (vision tower with window attention and patch merger, mRoPE
text model), the real :class:`Qwen2VLImageProcessor`, a byte-level BPE tokenizer trained
here on a small English and Chinese text with Qwen's special tokens, and a chat template
that renders messages the way Qwen2.5-VL's does, one
``<|vision_start|><|image_pad|><|vision_end|>`` per image. Nothing is downloaded.
"""

# ruff: noqa: RUF001  (Chinese replies use full-width punctuation)

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

# Qwen2.5-VL's chat template, restricted to text and image parts.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' or 'image' in part %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif 'text' in part %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _corpus() -> list[str]:
    """Text the tokenizer is trained on: the GLEAM-X prompts and replies in both languages."""
    import numpy as np

    from gleam_geo.explain.base import Evidence
    from gleam_geo.explain.prompt import chat_messages, format_reply

    pixels = np.zeros((8, 8, 3), np.uint8)
    evidence = Evidence(retrieval_score=0.8, inliers=40, putative_matches=60, heading_deg=12.0)
    texts = ["You are a helpful assistant.", "0123456789 .,:;!?()[]{}\"'-_/%°"]
    for language in ("en", "zh"):
        for message in chat_messages(pixels, pixels, evidence, language):
            content = message["content"]
            parts = [content] if isinstance(content, str) else [p["text"] for p in content if "text" in p]
            texts.extend(parts)
    texts += [
        format_reply(True, 0.9, "Roads and roofs line up; 40 of 60 matches are verified."),
        format_reply(False, 0.8, "No structure agrees and too few matches survive."),
        format_reply(True, 0.85, "道路和建筑轮廓一致，几何验证通过。"),
        format_reply(False, 0.7, "匹配点太少，两幅影像不是同一个地方。"),
    ]
    return texts


def _tokenizer(vocab_size: int) -> Any:
    """A byte-level BPE tokenizer with Qwen's pre-tokenizer and special tokens, trained offline."""
    from tokenizers import models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer

    backend = Qwen2Tokenizer().backend_tokenizer  # Qwen's normalizer, pre-tokenizer and decoder
    backend.model = models.BPE()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(_corpus(), trainer=trainer)
    merges = [tuple(pair) for pair in json.loads(backend.to_str())["model"]["merges"]]
    tokenizer = Qwen2Tokenizer(
        vocab=backend.get_vocab(), merges=merges, eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    tokenizer.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS[1:])})
    return tokenizer


def build_tiny_qwen(out: Path) -> Path:
    """Write a tiny random Qwen2.5-VL (model, processor, tokenizer, template) to ``out``."""
    import torch

    from gleam_geo._compat.torchvision_shim import import_torchvision

    import_torchvision()
    from transformers import (
        GenerationConfig,
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    tokenizer = _tokenizer(vocab_size=2000)
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 4096,
            "initializer_range": 0.2,  # a random lm_head strong enough to fit a reply in a few steps
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 56,
            "out_hidden_size": 64,
            "fullatt_block_indexes": [1],
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        pad_token_id=ids["<|endoftext|>"],
        do_sample=False,
    )
    image_processor = Qwen2VLImageProcessor(
        patch_size=14, temporal_patch_size=2, merge_size=2, min_pixels=28 * 28, max_pixels=112 * 112
    )
    video_processor = Qwen2VLVideoProcessor(patch_size=14, temporal_patch_size=2, merge_size=2)
    processor = Qwen2_5_VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=CHAT_TEMPLATE,
    )
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    return out


_BUILT: dict[Path, Path] = {}


def tiny_qwen_once(root: Path) -> Path:
    """:func:`build_tiny_qwen` into ``root / "tiny_qwen"``, built once per process."""
    if root not in _BUILT:
        _BUILT[root] = build_tiny_qwen(root / "tiny_qwen")
    return _BUILT[root]


def write_jsonl(folder: Path, records: list[dict[str, Any]]) -> Path:
    """Write GLEAM-X records to ``folder / "train.jsonl"`` with a synthetic 64 px image pair each.

    ``query_image`` and ``reference_image`` are filled in (relative paths); the records are
    otherwise written as given.
    """
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    lines = []
    for number, record in enumerate(records):
        for key in ("query_image", "reference_image"):
            name = f"{number}_{key}.png"
            Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(folder / name)
            record = {**record, key: name}
        lines.append(json.dumps(record, ensure_ascii=False))
    path = folder / "train.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
