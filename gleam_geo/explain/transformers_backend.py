"""Explain pairs with a local Qwen2.5-VL through Hugging Face transformers.

The model comes from a local directory or from the Hugging Face cache (a repo id such as
``Qwen/Qwen2.5-VL-3B-Instruct``); it is never downloaded here, and no remote code runs.
Weights load from safetensors only: bfloat16 on CUDA, float32 on the CPU. A LoRA adapter
written by ``python -m training.gleam_x.finetune_lora`` can be applied on top.

transformers, peft and torch are imported when an explainer is built, not when this
module is imported.
"""

from __future__ import annotations

import copy
import hashlib
import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from ..errors import ExplainerError
from .base import Evidence, Explanation, Language, check_language
from .prompt import PROMPT_VERSION, chat_messages, parse_reply

if TYPE_CHECKING:
    import torch

__all__ = ["TransformersExplainer", "fit_image", "load_qwen_vl", "resolve_model_path", "torch_dtype"]

#: ``model_type`` of the checkpoints this backend loads.
MODEL_TYPE = "qwen2_5_vl"
ADAPTER_WEIGHTS = "adapter_model.safetensors"

_FETCH_HINT = (
    "on a connected machine run `huggingface-cli download Qwen/Qwen2.5-VL-3B-Instruct`, then copy the "
    "cache and set HF_HOME to it, or pass the model's directory"
)


def resolve_model_path(model_path: str | Path) -> Path:
    """Find a model offline: a local directory, else a repo id in the Hugging Face cache.

    Args:
        model_path: a directory holding ``config.json``, or a repo id such as
            ``"Qwen/Qwen2.5-VL-3B-Instruct"`` already in the cache (``HF_HOME``).

    Returns:
        The directory that holds the model.

    Raises:
        ExplainerError: the model is neither a directory nor in the cache, or is not Qwen2.5-VL.
    """
    path = Path(model_path).expanduser()
    if not path.is_dir():
        text = str(model_path)
        if text.count("/") != 1 or text.startswith((".", "/", "~")):
            raise ExplainerError(f"model directory {text} not found; {_FETCH_HINT}")
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError

        try:
            path = Path(snapshot_download(text, local_files_only=True))
        except LocalEntryNotFoundError:
            raise ExplainerError(
                f"model {text} is not a directory and not in the Hugging Face cache; {_FETCH_HINT}"
            ) from None
    config = path / "config.json"
    if not config.is_file():
        raise ExplainerError(f"{path} holds no config.json, so it is not a transformers model; {_FETCH_HINT}")
    model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type")
    if model_type != MODEL_TYPE:
        raise ExplainerError(
            f"{path} holds a {model_type!r} model; this backend runs Qwen2.5-VL ({MODEL_TYPE!r}) models"
        )
    return path


def torch_dtype(dtype: str | torch.dtype | None, device: str) -> torch.dtype:
    """The weight dtype: ``dtype`` (a torch dtype or its name), else bf16 on CUDA and fp32 elsewhere."""
    import torch

    if dtype is None:
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    resolved = getattr(torch, str(dtype).removeprefix("torch."), None)
    if not isinstance(resolved, torch.dtype):
        raise ValueError(f"unknown dtype {dtype!r}; use 'bfloat16', 'float16' or 'float32'")
    return resolved


def load_qwen_vl(path: Path, device: str, dtype: torch.dtype) -> tuple[Any, Any]:
    """Load a Qwen2.5-VL model and its processor from a resolved directory, offline.

    Args:
        path: the model directory (see :func:`resolve_model_path`).
        device: torch device to put the model on.
        dtype: weight dtype.

    Returns:
        ``(model, processor)``; the model is in eval mode.

    Raises:
        ExplainerError: the directory lacks safetensors weights or processor files.
    """
    from .._compat.torchvision_shim import import_torchvision

    import_torchvision()  # transformers imports torchvision when it is installed
    try:
        from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration
    except ImportError as exc:
        raise ImportError(
            f"the transformers explainer needs transformers>=4.50 ({exc}); pip install 'gleam-geo[mllm]'"
        ) from None

    if not any(path.glob("*.safetensors")):
        raise ExplainerError(f"{path} holds no .safetensors weights; only safetensors checkpoints are loaded")
    try:
        processor = AutoProcessor.from_pretrained(path, local_files_only=True, trust_remote_code=False)
        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(
            path, dtype=dtype, local_files_only=True, trust_remote_code=False, use_safetensors=True
        )
    except OSError as exc:
        reason = str(exc).splitlines()[0]
        raise ExplainerError(f"cannot load the model in {path} ({reason}); {_FETCH_HINT}") from None
    return model.to(device).eval(), processor


def fit_image(image: np.ndarray, max_px: int) -> np.ndarray:
    """Shrink ``image`` (keeping its aspect ratio) so its longer side is at most ``max_px`` pixels."""
    height, width = image.shape[:2]
    scale = max_px / max(height, width)
    if scale >= 1:
        return image
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize(size, Image.Resampling.LANCZOS))


class TransformersExplainer:
    """A local Qwen2.5-VL (optionally with a LoRA adapter) that explains pairs.

    Args:
        model_path: a model directory or a repo id in the Hugging Face cache.
        device: ``"auto"``/``None`` (CUDA when available), ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
        dtype: weight dtype (a torch dtype or its name); default bf16 on CUDA, fp32 elsewhere.
        max_new_tokens: the longest reply generated.
        max_image_px: each image is shrunk so its longer side is at most this many pixels.
        adapter_path: a LoRA adapter directory (``adapter_config.json`` and
            ``adapter_model.safetensors``), merged into the weights on load.

    Attributes:
        model_id: ``"transformers:<model dir name>"``, plus ``"+<adapter dir name>@<hash>"`` with an
            adapter (the first 8 hex digits of its weights' SHA-256, so a retrained adapter is a new model).

    Raises:
        ExplainerError: the model or the adapter cannot be found or loaded.
        DeviceError: an explicit device that is not available.
    """

    def __init__(
        self,
        model_path: str | Path,
        *,
        device: str | None = None,
        dtype: str | torch.dtype | None = None,
        max_new_tokens: int = 384,
        max_image_px: int = 448,
        adapter_path: str | Path | None = None,
    ) -> None:
        from ..models.device import select_device

        self.path = resolve_model_path(model_path)
        self.device = select_device(device)
        self.dtype = torch_dtype(dtype, self.device)
        self.max_image_px = max_image_px
        self.model, self.processor = load_qwen_vl(self.path, self.device, self.dtype)
        name = Path(str(model_path).rstrip("/")).name
        self.adapter_path = None if adapter_path is None else Path(adapter_path).expanduser()
        if self.adapter_path is not None:
            self.model = _merge_adapter(self.model, self.adapter_path)
            digest = hashlib.sha256((self.adapter_path / ADAPTER_WEIGHTS).read_bytes()).hexdigest()
            name = f"{name}+{self.adapter_path.name}@{digest[:8]}"
        self.model_id = f"transformers:{name}"
        self.generation_config = copy.deepcopy(self.model.generation_config)
        self.generation_config.update(
            do_sample=False, temperature=None, top_p=None, top_k=None, max_new_tokens=max_new_tokens
        )

    def explain(
        self, query: np.ndarray, reference: np.ndarray, evidence: Evidence, language: Language
    ) -> Explanation:
        """Ask the model whether ``query`` shows the place in ``reference``; parse its reply.

        Raises:
            ExplainerError: the reply holds no verdict.
        """
        import torch

        language = check_language(language)
        messages = chat_messages(
            fit_image(query, self.max_image_px), fit_image(reference, self.max_image_px), evidence, language
        )
        inputs = self.processor.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
        ).to(self.device)
        prompt_tokens = inputs["input_ids"].shape[1]
        with torch.inference_mode():
            output = self.model.generate(**inputs, generation_config=self.generation_config)
        new_tokens = output[0, prompt_tokens:]
        reply = self.processor.decode(new_tokens, skip_special_tokens=True)
        verdict, confidence, reasoning = parse_reply(reply)
        return Explanation(
            verdict=verdict,
            confidence=confidence,
            reasoning=reasoning,
            language=language,
            model=self.model_id,
            evidence=evidence,
            extra={"reply": reply, "prompt_version": PROMPT_VERSION, "new_tokens": len(new_tokens)},
        )


def _merge_adapter(model: Any, adapter: Path) -> Any:
    if (
        not (adapter / "adapter_config.json").is_file()
        or not (adapter / "adapter_model.safetensors").is_file()
    ):
        raise ExplainerError(
            f"LoRA adapter {adapter} needs adapter_config.json and adapter_model.safetensors; "
            "pass the --out folder of python -m training.gleam_x.finetune_lora"
        )
    try:
        from peft import PeftModel
    except ImportError as exc:
        raise ImportError(f"LoRA adapters need peft ({exc}); pip install 'gleam-geo[gleam-x]'") from None

    with warnings.catch_warnings():  # peft reads a deprecated transformers property
        warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated", FutureWarning)
        peft_model = PeftModel.from_pretrained(model, adapter, is_trainable=False)
    return peft_model.merge_and_unload().eval()
