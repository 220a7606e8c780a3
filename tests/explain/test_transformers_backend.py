"""The local transformers backend, on a tiny random Qwen2.5-VL built in the test session."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import numpy as np
import pytest

from gleam_geo.errors import ExplainerError
from gleam_geo.explain import transformers_backend
from gleam_geo.explain.base import Evidence, Explainer
from gleam_geo.explain.prompt import chat_messages
from gleam_geo.explain.transformers_backend import TransformersExplainer, fit_image, resolve_model_path

from .tiny_qwen import write_jsonl

EVIDENCE = Evidence(retrieval_score=0.8, inliers=40, putative_matches=60)
REPLY = {"verdict": True, "confidence": 0.9, "reasoning": "Roads and roofs line up."}


@pytest.fixture(scope="module")
def explainer(tiny_qwen):
    return TransformersExplainer(tiny_qwen, device="cpu", max_new_tokens=24, max_image_px=56)


def _images(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (60, 80, 3), np.uint8), rng.integers(0, 256, (112, 112, 3), np.uint8)


def test_loads_the_tiny_model_as_an_explainer(explainer, tiny_qwen):
    assert isinstance(explainer, Explainer)
    assert explainer.model_id == "transformers:tiny_qwen"
    assert explainer.dtype.is_floating_point and str(explainer.dtype) == "torch.float32"
    assert not explainer.model.training


def test_processor_expands_each_image_to_its_vision_tokens(explainer):
    processor, config = explainer.processor, explainer.model.config
    query, reference = _images()
    messages = chat_messages(query, reference, EVIDENCE, "en")
    inputs = processor.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    grid = inputs["image_grid_thw"]
    assert grid.tolist() == [[1, 4, 6], [1, 8, 8]]  # 56x84 and 112x112 px in 14 px patches
    assert inputs["pixel_values"].shape[0] == int(grid.prod(dim=1).sum())
    ids = inputs["input_ids"][0].tolist()
    starts = [i for i, t in enumerate(ids) if t == config.vision_start_token_id]
    ends = [i for i, t in enumerate(ids) if t == config.vision_end_token_id]
    merge = config.vision_config.spatial_merge_size**2
    spans = [ids[s + 1 : e] for s, e in zip(starts, ends, strict=True)]
    assert [len(span) for span in spans] == [6, 16] == [int(g.prod()) // merge for g in grid]
    assert all(set(span) == {config.image_token_id} for span in spans)
    assert ids.count(config.image_token_id) == 22


def test_chat_template_holds_both_images_and_the_prompt(explainer):
    query, reference = _images()
    text = explainer.processor.apply_chat_template(
        chat_messages(query, reference, EVIDENCE, "zh"), add_generation_prompt=True, tokenize=False
    )
    assert text.startswith("<|im_start|>system\n")
    assert text.count("<|vision_start|><|image_pad|><|vision_end|>") == 2
    assert "图 1 为查询影像" in text and "只输出一个 JSON 对象" in text
    assert "60 个候选中 40 个" in text
    assert text.endswith("<|im_start|>assistant\n")


def test_generate_returns_new_tokens(explainer):
    query, reference = _images()
    inputs = explainer.processor.apply_chat_template(
        chat_messages(query, reference, EVIDENCE, "en"),
        add_generation_prompt=True,
        tokenize=True,
        return_dict=True,
        return_tensors="pt",
    )
    output = explainer.model.generate(**inputs, generation_config=explainer.generation_config)
    new = output.shape[1] - inputs["input_ids"].shape[1]
    assert 1 <= new <= 24
    assert output[0, : inputs["input_ids"].shape[1]].tolist() == inputs["input_ids"][0].tolist()


def test_a_random_model_reply_is_a_clean_explainer_error(explainer):
    with pytest.raises(ExplainerError, match="no verdict found") as info:
        explainer.explain(*_images(), EVIDENCE, "en")
    assert "\n" not in str(info.value)


@pytest.fixture(scope="module")
def taught_adapter(tiny_qwen, tmp_path_factory):
    """A LoRA adapter that taught the tiny model to answer one pair with ``REPLY``."""
    from training.gleam_x.finetune_lora import main

    folder = tmp_path_factory.mktemp("taught")
    data = write_jsonl(
        folder / "data", [{"id": "p0", "language": "en", "evidence": EVIDENCE.to_dict(), **REPLY}]
    )
    out = folder / "adapter"
    main(["--model", str(tiny_qwen), "--data", str(data), "--out", str(out), "--steps", "10", "--lr", "0.02",
          "--grad-accum", "1", "--lora-dropout", "0", "--max-image-px", "56", "--device", "cpu"])  # fmt: skip
    return data, out


def test_explain_parses_the_reply_the_adapter_taught(tiny_qwen, taught_adapter):
    from PIL import Image

    data, adapter = taught_adapter
    record = json.loads(data.read_text().splitlines()[0])
    query = np.asarray(Image.open(data.parent / record["query_image"]))
    reference = np.asarray(Image.open(data.parent / record["reference_image"]))
    explainer = TransformersExplainer(tiny_qwen, adapter_path=adapter, max_new_tokens=40, max_image_px=56)
    explanation = explainer.explain(query, reference, EVIDENCE, "en")
    assert re.fullmatch(r"transformers:tiny_qwen\+adapter@[0-9a-f]{8}", explainer.model_id)
    assert (explanation.verdict, explanation.confidence, explanation.reasoning) == tuple(REPLY.values())
    assert explanation.model == explainer.model_id and explanation.evidence == EVIDENCE
    assert json.loads(explanation.extra["reply"])["verdict"] == "same"


def test_missing_model_is_a_one_line_error_with_the_fix(tmp_path):
    with pytest.raises(ExplainerError, match="huggingface-cli download") as info:
        resolve_model_path(tmp_path / "no-such-model")
    assert "\n" not in str(info.value)
    with pytest.raises(ExplainerError, match="not in the Hugging Face cache"):
        TransformersExplainer("gleam-geo-tests/no-such-model")


def test_other_model_types_and_missing_adapters_are_refused(tiny_qwen, tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(ExplainerError, match="'llama' model"):
        resolve_model_path(tmp_path)
    with pytest.raises(ExplainerError, match=r"adapter_model\.safetensors"):
        TransformersExplainer(tiny_qwen, adapter_path=tmp_path)


def test_fit_image_keeps_the_aspect_ratio():
    image = np.zeros((300, 600, 3), np.uint8)
    assert fit_image(image, 448).shape == (224, 448, 3)
    assert fit_image(image, 1000) is image


def test_transformers_peft_and_torch_are_imported_lazily():
    source = Path(transformers_backend.__file__).read_text(encoding="utf-8")
    top_level = [node for node in ast.parse(source).body if isinstance(node, (ast.Import, ast.ImportFrom))]
    modules = {alias.name for node in top_level if isinstance(node, ast.Import) for alias in node.names}
    modules |= {node.module for node in top_level if isinstance(node, ast.ImportFrom) and node.module}
    assert modules and not {m.split(".")[0] for m in modules} & {"transformers", "peft", "torch"}
