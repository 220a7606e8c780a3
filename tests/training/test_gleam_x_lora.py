"""LoRA fine-tuning of Qwen2.5-VL (training.gleam_x.finetune_lora) on a tiny random model, on CPU."""

# ruff: noqa: RUF001  (Chinese replies use full-width punctuation)

from __future__ import annotations

import csv
import json
import math

import pytest
from explain.tiny_qwen import tiny_qwen_once, write_jsonl
from safetensors import safe_open

from gleam_geo.explain.base import Evidence
from gleam_geo.explain.prompt import format_reply
from gleam_geo.explain.transformers_backend import TransformersExplainer
from training.gleam_x.finetune_lora import IGNORE_INDEX, collate, encode, main, read_records

EN_EVIDENCE = {"inliers": 40, "putative_matches": 60, "retrieval_score": 0.8}
RECORDS = [
    {"id": "a-en", "language": "en", "evidence": EN_EVIDENCE, "label": True,
     "verdict": True, "confidence": 0.9, "reasoning": "Roads and roofs line up."},
    {"id": "b-zh", "language": "zh", "evidence": {"inliers": 0, "putative_matches": 12, "unknown_key": 1},
     "verdict": False, "confidence": 0.7, "reasoning": "匹配点太少，两幅影像不是同一个地方。"},
]  # fmt: skip


@pytest.fixture(scope="module")
def tiny_qwen(tmp_path_factory):
    return tiny_qwen_once(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_jsonl(tmp_path_factory.mktemp("gleam_x") / "data", RECORDS)


def test_two_steps_on_cpu_save_an_adapter_that_loads_back(tiny_qwen, data, tmp_path):
    out = tmp_path / "adapter"
    args = ["--model", str(tiny_qwen), "--data", str(data), "--out", str(out), "--steps", "2",
            "--batch-size", "2", "--grad-accum", "1", "--max-image-px", "56", "--device", "cpu"]  # fmt: skip
    card = main(args)
    assert math.isfinite(card["final_loss"]) and card["final_loss"] > 0
    assert card["records"] == 2 and card["steps"] == 2 and card["bf16"] is False
    assert json.loads((out / "gleam_x_lora.json").read_text()) == card
    with (out / "train_log.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [1, 2]
    assert all(math.isfinite(float(r["loss"])) for r in rows)
    with safe_open(str(out / "adapter_model.safetensors"), "pt") as weights:
        keys = list(weights.keys())
    assert keys and all("lora_" in k and "language_model" in k for k in keys)  # vision tower untouched
    projections = {k.split(".lora_")[0].rsplit(".", 1)[1] for k in keys}
    assert projections == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}

    explainer = TransformersExplainer(tiny_qwen, adapter_path=out, max_image_px=56)
    assert explainer.model_id.startswith("transformers:tiny_qwen+adapter@")
    assert not any("lora_" in name for name, _ in explainer.model.named_parameters())  # merged

    resumed = main([*args, "--steps", "3", "--resume"])  # the later --steps wins
    with (out / "train_log.csv").open() as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == [1, 2, 3]
    assert resumed["steps"] == 3 and math.isfinite(resumed["final_loss"])
    assert TransformersExplainer(tiny_qwen, adapter_path=out).model_id != explainer.model_id


def test_only_the_reply_is_in_the_labels(tiny_qwen, data):
    from gleam_geo._compat.torchvision_shim import import_torchvision

    import_torchvision()
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_qwen, local_files_only=True)
    records = read_records(data)
    assert records[1].evidence == Evidence(inliers=0, putative_matches=12)
    assert [r.label for r in records] == [True, None]
    examples = [encode(processor, record, 56) for record in records]
    for record, example in zip(records, examples, strict=True):
        answer = example["labels"] != IGNORE_INDEX
        start = int(answer.nonzero()[0])
        assert answer[start:].all() and example["mm_token_type_ids"][start:].eq(0).all()
        reply = format_reply(record.verdict, record.confidence, record.reasoning)
        assert processor.decode(example["labels"][start:]) == reply + "<|im_end|>\n"
        assert processor.decode(example["input_ids"][:start]).endswith("<|im_start|>assistant\n")
    batch = collate(examples, pad_token_id=processor.tokenizer.pad_token_id)
    lengths = [len(e["input_ids"]) for e in examples]
    assert batch["input_ids"].shape == (2, max(lengths))
    assert batch["attention_mask"].sum(dim=1).tolist() == lengths
    assert batch["image_grid_thw"].shape == (4, 3)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"query_image": "q.png"}', "missing key"),
        (
            '{"query_image": "q.png", "reference_image": "r.png", "verdict": true, "reasoning": ""}',
            "not found",
        ),
    ],
)
def test_bad_records_are_one_line_errors_with_the_line_number(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text("\n" + line + "\n")
    with pytest.raises(ValueError, match=message) as info:
        read_records(path)
    assert str(info.value).startswith(f"{path}:2:") and "\n" not in str(info.value)


def test_bad_values_are_refused(data, tmp_path):
    good = json.loads(data.read_text().splitlines()[0])
    for key, value, message in [("language", "fr", "language"), ("verdict", "yes", "verdict"),
                                ("label", 1, "label"), ("confidence", 3, "confidence")]:  # fmt: skip
        path = data.parent / "bad.jsonl"
        path.write_text(json.dumps({**good, key: value}) + "\n")
        with pytest.raises(ValueError, match=message):
            read_records(path)
    with pytest.raises(FileNotFoundError, match="build_dataset"):
        read_records(tmp_path / "missing.jsonl")


def test_only_correct_drops_records_whose_verdict_contradicts_the_label(tmp_path):
    wrong = write_jsonl(tmp_path / "data", [{**RECORDS[0], "label": False}])
    args = ["--model", "unused", "--data", str(wrong), "--out", str(tmp_path / "out"), "--only-correct"]
    with pytest.raises(ValueError, match="matches its label"):
        main(args)
