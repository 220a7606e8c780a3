"""LoRA fine-tuning of Qwen2.5-VL on GLEAM-X explanations.

``python -m training.gleam_x.finetune_lora --model PATH --data train.jsonl --out DIR``

Each JSONL record is one pair: ``query_image`` and ``reference_image`` (paths, relative to
the JSONL file's folder or absolute), ``evidence`` (a dict of
:class:`gleam_geo.explain.Evidence` fields), ``language`` ("en"/"zh") and the target
``verdict``, ``confidence`` and ``reasoning``. The prompt is the one the transformers
explainer sends (:func:`gleam_geo.explain.prompt.chat_messages`); the target is
:func:`~gleam_geo.explain.prompt.format_reply` as the assistant turn, and only its tokens
count in the loss. LoRA adapts the language model's attention and MLP projections; the
vision tower and everything else stay frozen.

``--out`` receives the adapter (``adapter_config.json``, ``adapter_model.safetensors``),
``gleam_x_lora.json`` (how it was trained), ``train_log.csv`` (loss per step) and
``state.pt`` (optimizer and schedule, for ``--resume``), every ``--save-every`` steps and at
the end. Load the adapter with ``TransformersExplainer(model, adapter_path=DIR)``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import json
import logging
import math
import random
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gleam_geo.explain.base import LANGUAGES, Evidence, Language
from gleam_geo.explain.prompt import PROMPT_VERSION, chat_messages, format_reply
from gleam_geo.explain.transformers_backend import (
    ADAPTER_WEIGHTS,
    fit_image,
    load_qwen_vl,
    resolve_model_path,
    torch_dtype,
)
from gleam_geo.io import load_image
from gleam_geo.models.device import select_device

__all__ = ["TARGET_MODULES", "Record", "encode", "main", "read_records", "train"]

logger = logging.getLogger(__name__)

#: Projections of the language model that get LoRA adapters (the vision tower's are excluded).
TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
CARD_FILE = "gleam_x_lora.json"
LOG_FILE = "train_log.csv"
STATE_FILE = "state.pt"
IGNORE_INDEX = -100
_EVIDENCE_FIELDS = {f.name for f in dataclasses.fields(Evidence)}


@dataclass(frozen=True)
class Record:
    """One training pair and its target reply."""

    id: str
    query_image: Path
    reference_image: Path
    evidence: Evidence
    language: Language
    verdict: bool
    confidence: float
    reasoning: str
    label: bool | None = None


def _record(raw: Any, base: Path, where: str) -> Record:
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(raw).__name__}")
    missing = [k for k in ("query_image", "reference_image", "verdict", "reasoning") if k not in raw]
    if missing:
        raise ValueError(f"{where}: missing key(s) {', '.join(missing)}")
    images = []
    for key in ("query_image", "reference_image"):
        path = Path(str(raw[key])).expanduser()
        path = path if path.is_absolute() else base / path
        if not path.is_file():
            raise ValueError(f"{where}: {key} {path} not found")
        images.append(path)
    language = raw.get("language", "en")
    if language not in LANGUAGES:
        raise ValueError(f"{where}: language {language!r} is not one of {', '.join(LANGUAGES)}")
    for key in ("verdict", "label"):
        if key in raw and not isinstance(raw[key], bool):
            raise ValueError(f"{where}: {key} must be true or false, got {raw[key]!r}")
    confidence = raw.get("confidence", 1.0)
    if not isinstance(confidence, (int, float)) or not 0.0 <= confidence <= 1.0:
        raise ValueError(f"{where}: confidence must be a number from 0 to 1, got {confidence!r}")
    evidence = raw.get("evidence") or {}
    if not isinstance(evidence, dict):
        raise ValueError(f"{where}: evidence must be an object of Evidence fields")
    try:
        parsed = Evidence(**{k: v for k, v in evidence.items() if k in _EVIDENCE_FIELDS})
    except TypeError as exc:
        raise ValueError(f"{where}: bad evidence ({exc})") from None
    return Record(
        id=str(raw.get("id", where)),
        query_image=images[0],
        reference_image=images[1],
        evidence=parsed,
        language=language,
        verdict=raw["verdict"],
        confidence=float(confidence),
        reasoning=str(raw["reasoning"]),
        label=raw.get("label"),
    )


def read_records(path: str | Path) -> list[Record]:
    """Read and check a GLEAM-X JSONL file; blank lines are skipped, unknown keys ignored.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: a line that is not valid JSON or not a usable record (one line, with its number).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"training data {path} not found; build it with training.gleam_x.build_dataset"
        )
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{where}: not valid JSON ({exc.msg})") from None
        records.append(_record(raw, path.parent, where))
    if not records:
        raise ValueError(f"{path} holds no records")
    return records


def encode(processor: Any, record: Record, max_image_px: int) -> dict[str, Any]:
    """Tokenize one record: the prompt (labels masked) followed by the target reply.

    Returns:
        ``input_ids``, ``labels``, ``mm_token_type_ids`` (1-D tensors), ``pixel_values`` and
        ``image_grid_thw`` for the record's two images.
    """
    import torch

    query = fit_image(load_image(record.query_image).pixels, max_image_px)
    reference = fit_image(load_image(record.reference_image).pixels, max_image_px)
    messages = chat_messages(query, reference, record.evidence, record.language)
    reply = format_reply(record.verdict, record.confidence, record.reasoning)
    answer = {"role": "assistant", "content": [{"type": "text", "text": reply}]}
    prompt_text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    full_text = processor.apply_chat_template([*messages, answer], tokenize=False)
    if not full_text.startswith(prompt_text):
        raise ValueError("the model's chat template renders the prompt differently with an answer appended")
    prompt = processor.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    answer_ids = processor.tokenizer(
        full_text[len(prompt_text) :], add_special_tokens=False, return_tensors="pt"
    )
    answer_ids = answer_ids["input_ids"][0]
    prompt_ids = prompt["input_ids"][0]
    mm_types = prompt.get("mm_token_type_ids")
    mm_types = torch.zeros_like(prompt_ids) if mm_types is None else mm_types[0]
    return {
        "input_ids": torch.cat([prompt_ids, answer_ids]),
        "labels": torch.cat([torch.full_like(prompt_ids, IGNORE_INDEX), answer_ids]),
        "mm_token_type_ids": torch.cat([mm_types, torch.zeros_like(answer_ids)]),
        "pixel_values": prompt["pixel_values"],
        "image_grid_thw": prompt["image_grid_thw"],
    }


def collate(examples: Sequence[dict[str, Any]], pad_token_id: int) -> dict[str, Any]:
    """Right-pad encoded examples into one batch; images are concatenated in order."""
    import torch

    length = max(len(e["input_ids"]) for e in examples)

    def pad(key: str, value: int) -> torch.Tensor:
        return torch.stack(
            [torch.nn.functional.pad(e[key], (0, length - len(e[key])), value=value) for e in examples]
        )

    return {
        "input_ids": pad("input_ids", pad_token_id),
        "labels": pad("labels", IGNORE_INDEX),
        "mm_token_type_ids": pad("mm_token_type_ids", 0),
        "attention_mask": torch.stack(
            [(torch.arange(length) < len(e["input_ids"])).long() for e in examples]
        ),
        "pixel_values": torch.cat([e["pixel_values"] for e in examples]),
        "image_grid_thw": torch.cat([e["image_grid_thw"] for e in examples]),
    }


def _batches(records: list[Record], batch_size: int, seed: int) -> Iterator[list[Record]]:
    rng = random.Random(seed)
    while True:
        order = rng.sample(records, len(records))
        for start in range(0, len(order), batch_size):
            yield order[start : start + batch_size]


def add_lora(model: Any, r: int, alpha: int, dropout: float) -> Any:
    """Wrap ``model`` with LoRA on the language model's projections; every other weight is frozen."""
    from peft import LoraConfig, get_peft_model

    pattern = r".*language_model.*\.(" + "|".join(TARGET_MODULES) + r")$"
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=pattern, bias="none")
    with warnings.catch_warnings():  # peft reads a deprecated transformers property
        warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated", FutureWarning)
        return get_peft_model(model, config)


def _save(model: Any, optimizer: Any, out: Path, step: int) -> None:
    import torch

    model.save_pretrained(out, safe_serialization=True)
    torch.save({"step": step, "optimizer": optimizer.state_dict()}, out / STATE_FILE)


def _resume(model: Any, optimizer: Any, scheduler: Any, out: Path, device: str) -> int:
    """Load the adapter and optimizer saved in ``out``, move the schedule on; return the steps done.

    The schedule is this run's (``--steps`` may have grown), at the step the saved run reached.
    """
    import torch
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    if not (out / STATE_FILE).is_file() or not (out / ADAPTER_WEIGHTS).is_file():
        raise FileNotFoundError(f"--resume: {out} holds no {STATE_FILE} and {ADAPTER_WEIGHTS}; drop --resume")
    set_peft_model_state_dict(model, load_file(out / ADAPTER_WEIGHTS, device=device))
    state = torch.load(out / STATE_FILE, map_location=device, weights_only=True)
    optimizer.load_state_dict(state["optimizer"])
    done = int(state["step"])
    scheduler.last_epoch = done
    for group, base, factor in zip(
        optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas, strict=True
    ):
        group["lr"] = base * factor(done)
    logger.info("resumed from step %d in %s", done, out)
    return done


def train(args: argparse.Namespace) -> dict[str, Any]:
    """Fine-tune as the command line asks; return the model card written beside the adapter."""
    import torch

    from training.gleam_c.scheduler import cosine_with_warmup

    records = read_records(args.data)
    if args.only_correct:
        kept = [r for r in records if r.label is None or r.verdict == r.label]
        logger.info("--only-correct: kept %d of %d records", len(kept), len(records))
        if not kept:
            raise ValueError(f"no record in {args.data} has a verdict that matches its label")
        records = kept
    device = select_device(args.device)
    bf16 = args.bf16 == "on" or (args.bf16 == "auto" and device.startswith("cuda"))
    if bf16 and not device.startswith("cuda"):
        raise ValueError("--bf16 on needs a CUDA device; use --bf16 auto or off")
    torch.manual_seed(args.seed)
    model_path = resolve_model_path(args.model)
    model, processor = load_qwen_vl(
        model_path, device, torch_dtype("bfloat16" if bf16 else "float32", device)
    )
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    model = add_lora(model, args.lora_r, args.lora_alpha, args.lora_dropout)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)
    scheduler = cosine_with_warmup(optimizer, args.warmup_steps, args.steps)
    pad_id = processor.tokenizer.pad_token_id
    pad_id = processor.tokenizer.eos_token_id if pad_id is None else pad_id
    batches = _batches(records, args.batch_size, args.seed)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    done = _resume(model, optimizer, scheduler, out, device) if args.resume else 0
    if done >= args.steps:
        raise ValueError(f"{out} already holds {done} steps; pass a larger --steps to resume")
    for _ in range(done * args.grad_accum):  # the batches the resumed run already saw
        next(batches)
    started = time.perf_counter()
    loss_value = math.nan
    with (out / LOG_FILE).open("a" if done else "w", newline="", encoding="utf-8") as log_file:
        log = csv.writer(log_file)
        if not done:
            log.writerow(["step", "loss", "lr", "seconds"])
        for step in range(done + 1, args.steps + 1):
            total = 0.0
            for _ in range(args.grad_accum):
                batch = next(batches)
                examples = [encode(processor, record, args.max_image_px) for record in batch]
                inputs = {k: v.to(device) for k, v in collate(examples, pad_id).items()}
                with autocast:
                    loss = model(**inputs).loss / args.grad_accum
                loss.backward()
                total += float(loss.detach())
            if not math.isfinite(total):
                raise FloatingPointError(f"loss is {total} at step {step}; lower --lr")
            lr = optimizer.param_groups[0]["lr"]
            torch.nn.utils.clip_grad_norm_(params, args.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            loss_value = total
            log.writerow([step, f"{loss_value:.6f}", f"{lr:.3e}", f"{time.perf_counter() - started:.1f}"])
            log_file.flush()
            if step % args.log_every == 0 or step == args.steps:
                logger.info("step %d/%d loss %.4f", step, args.steps, loss_value)
            if args.save_every and step % args.save_every == 0 and step < args.steps:
                _save(model, optimizer, out, step)
    _save(model, optimizer, out, args.steps)
    card = {
        "base_model": str(args.model),
        "prompt_version": PROMPT_VERSION,
        "records": len(records),
        "only_correct": args.only_correct,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "grad_accum": args.grad_accum,
        "lr": args.lr,
        "lora_r": args.lora_r,
        "lora_alpha": args.lora_alpha,
        "lora_dropout": args.lora_dropout,
        "target_modules": list(TARGET_MODULES),
        "max_image_px": args.max_image_px,
        "bf16": bf16,
        "final_loss": loss_value,
        "seconds": round(time.perf_counter() - started, 1),
    }
    (out / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    logger.info("wrote the adapter to %s", out)
    return card


def build_parser() -> argparse.ArgumentParser:
    """The command-line options."""
    parser = argparse.ArgumentParser(prog="python -m training.gleam_x.finetune_lora", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--model", required=True, help="Qwen2.5-VL directory or repo id in the HF cache")
    parser.add_argument("--data", required=True, help="GLEAM-X training JSONL")
    parser.add_argument("--out", required=True, help="folder for the adapter, card and log")
    parser.add_argument("--steps", type=int, default=1000, help="optimizer steps")
    parser.add_argument("--lr", type=float, default=1e-4, help="peak learning rate")
    parser.add_argument("--warmup-steps", type=int, default=0, help="linear warm-up steps")
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument("--max-grad-norm", type=float, default=1.0)
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--lora-alpha", type=int, default=32)
    parser.add_argument("--lora-dropout", type=float, default=0.05)
    parser.add_argument("--batch-size", type=int, default=1, help="pairs per micro-batch")
    parser.add_argument("--grad-accum", type=int, default=8, help="micro-batches per optimizer step")
    parser.add_argument("--bf16", choices=["auto", "on", "off"], default="auto",
                        help="bf16 weights and autocast (auto: on CUDA)")  # fmt: skip
    parser.add_argument("--max-image-px", type=int, default=448, help="longer image side, pixels")
    parser.add_argument("--only-correct", action="store_true",
                        help="train only on records whose verdict matches their label")  # fmt: skip
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--gradient-checkpointing", action="store_true", help="trade compute for memory")
    parser.add_argument("--save-every", type=int, default=0, help="also save every N steps (0: at the end)")
    parser.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log-every", type=int, default=10, help="log the loss every N steps")
    return parser


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command line entry point; returns the model card."""
    args = build_parser().parse_args(argv)
    for name in ("steps", "batch_size", "grad_accum", "max_image_px", "lora_r", "log_every"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be at least 1")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    return train(args)


if __name__ == "__main__":
    main()
