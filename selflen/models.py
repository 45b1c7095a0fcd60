"""Model provisioning: the embedded GGUF (converted once to a cached safetensors folder), hub ids, local folders
and a tiny random model for tests. Every function returns a local folder that transformers and vLLM can load.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from filelock import FileLock

from selflen.embedded import join_verified, lookup
from selflen.errors import SelflenError

log = logging.getLogger(__name__)

CONVERSION_VERSION = 2  # bump when the conversion recipe changes
MERGE_VERSION = 1  # bump when the adapter-merging recipe changes (merged_model_dir)
PROBE = [{"role": "user", "content": "Write one sentence about the sea."}]
TEMPLATES_DIR = Path(__file__).resolve().parent / "chat_templates"
CHAT_FORMATS = {  # name -> (template file, end-of-turn token)
    "chatml": ("chatml.jinja", "<|im_end|>"),
    "llama3": ("llama3.jinja", "<|eot_id|>"),
}
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|begin_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
]


class ModelNotFound(SelflenError):
    """A model cannot be provisioned; the message says how to get it."""


def check_chat_template(folder: Path) -> None:
    """A chat model folder must carry a chat template (every stage renders chats); else one clear error."""
    folder = Path(folder)
    if (folder / "chat_template.jinja").exists() or (folder / "chat_template.json").exists():
        return
    try:
        tok_cfg = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        tok_cfg = {}
    if isinstance(tok_cfg, dict) and tok_cfg.get("chat_template"):
        return
    raise ModelNotFound(
        f"{folder} has no chat template (no chat_template.jinja, no chat_template in tokenizer_config.json); "
        "use an instruct/chat model or add its template there"
    )


def check_adapter(folder: Path | str) -> None:
    """A LoRA adapter folder must have a readable ``adapter_config.json`` and its weights; else one clear error."""
    folder = Path(folder)
    hint = "delete the finetune stage folder (or redo=[finetune_<role>]) to train it again, or fix the path"
    try:
        cfg = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelNotFound(f"adapter folder {folder} is missing or has no adapter_config.json; {hint}") from None
    except (OSError, ValueError) as err:
        raise ModelNotFound(f"{folder}/adapter_config.json is corrupt ({str(err)[:80]}); {hint}") from None
    if not isinstance(cfg, dict) or not any(
        (folder / f).exists() for f in ("adapter_model.safetensors", "adapter_model.bin")
    ):
        raise ModelNotFound(f"adapter folder {folder} has no adapter weights (adapter_model.safetensors); {hint}")


def default_cache_dir() -> Path:
    return Path(os.environ.get("SELFLEN_CACHE", "~/.cache/selflen")).expanduser()


def _probe_logits(model, tokenizer):  # transformers objects
    import torch

    ids = tokenizer.apply_chat_template(PROBE, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        return model(input_ids=ids["input_ids"]).logits


def convert_embedded(out_dir: Path, key: str | None = None) -> None:
    """Join and verify the embedded model's GGUF, de-quantise it with transformers and save it as safetensors.

    ``save_pretrained`` refuses a GGUF-loaded model ("quantized with gguf and is not serializable"), so the
    weights (already fp32 tensors) are handed to a fresh model of the same class without the quantisation marker.
    The saved folder is reloaded and its logits on a probe prompt must equal the GGUF model's. The joined GGUF
    lives only in a temporary file beside ``out_dir``.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = lookup(key)
    gguf = join_verified(model, out_dir / "model.gguf")
    log.info("converting the embedded model %s (%s) once into %s", model.key, model.name, out_dir)
    tok = AutoTokenizer.from_pretrained(str(out_dir), gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(str(out_dir), gguf_file=gguf.name, dtype=torch.float32).eval()
    reference = _probe_logits(loaded, tok)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    with torch.device("meta"):
        clean = type(loaded)(config)
    clean.load_state_dict(loaded.state_dict(), assign=True)  # the same tensors: no second copy of the weights
    clean.tie_weights()
    clean.generation_config = loaded.generation_config
    stops = [tok.convert_tokens_to_ids(t) for t in model.stop_tokens]
    clean.generation_config.eos_token_id = stops if len(stops) > 1 else stops[0]
    clean.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    del loaded, clean
    gguf.unlink()
    reloaded = AutoModelForCausalLM.from_pretrained(str(out_dir), dtype=torch.float32).eval()
    diff = float((_probe_logits(reloaded, tok) - reference).abs().max())
    if diff > 1e-4:
        raise RuntimeError(f"converted model differs from the GGUF on the probe prompt (max |logit diff| {diff})")
    (out_dir / "selflen_conversion.json").write_text(json.dumps(
        {"model": model.name, "gguf_sha256": model.sha256, "packages": [f"{p.package}=={p.version}" for p in
         model.pieces], "licence": model.licence, "provenance": model.provenance, "version": CONVERSION_VERSION,
         "probe_max_abs_logit_diff": diff}, indent=1))


def _provision(target: Path, build) -> Path:  # build(tmp_dir) fills a folder
    """Build ``target`` once, safely when several processes ask at the same time (lock + atomic rename)."""
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / "config.json").exists():
            return target
        tmp = Path(tempfile.mkdtemp(prefix=target.name + ".tmp-", dir=target.parent))
        try:
            build(tmp)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def embedded_model_dir(cache_dir: Path | str | None = None, key: str | None = None) -> Path:
    """An embedded model (``key`` in ``selflen.embedded.EMBEDDED``; SmolLM2-135M-Instruct when None) as a
    safetensors folder, joined, verified and converted from its packaged GGUF on first use."""
    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    model = lookup(key)
    name = f"{model.key}-{model.sha256[:12]}-v{CONVERSION_VERSION}"
    return _provision(cache / name, lambda d: convert_embedded(d, model.key))


def _tiny_corpus() -> list[str]:
    try:
        from selflen.seeds import load_seeds

        texts = [s.prompt for lang in ("en", "zh") for s in load_seeds(lang)]
    except Exception:  # seeds are optional for the tokenizer; a fixed text keeps it deterministic
        texts = []
    base = (
        "The old lighthouse stood above the harbour. Every evening the keeper climbed the stairs, lit the lamp, "
        "and wrote a line in his log. Reports, essays, letters and plans: write clearly, give examples, and end "
        "each section with a short summary.\n\n写一篇关于城市交通的文章，分析问题并提出建议。"
    )
    return [base] * 4 + texts


def build_tiny_tokenizer(chat_format: str = "chatml", vocab_size: int = 1024):
    """A small byte-level BPE trained in-process on the project's seed texts, with a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(_tiny_corpus(), trainer=trainer)
    template_file, eos = CHAT_FORMATS[chat_format]
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=eos,
        pad_token="<|endoftext|>",
        bos_token="<|begin_of_text|>" if chat_format == "llama3" else None,
    )
    fast.chat_template = (TEMPLATES_DIR / template_file).read_text()
    return fast


def make_tiny_model(out_dir: Path | str, seed: int = 0, chat_format: str = "chatml") -> Path:
    """Save a random tiny Llama (2 layers, hidden 128, head_dim 64 — vLLM CPU needs 64) and its tokenizer."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    out = Path(out_dir)
    tok = build_tiny_tokenizer(chat_format)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=64,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        initializer_range=0.2,  # large random weights: confident, varied logits (no ties in greedy decoding)
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def tiny_model_dir(cache_dir: Path | str | None = None, seed: int = 0, chat_format: str = "chatml") -> Path:
    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    corpus = "\x00".join(_tiny_corpus())
    key = hashlib.sha256(f"tiny-v3-{seed}-{chat_format}-{corpus}".encode()).hexdigest()[:10]
    return _provision(cache / f"tiny-{chat_format}-{key}", lambda d: make_tiny_model(d, seed, chat_format))


def hub_model_dir(repo_id: str, online: bool | None = None, revision: str | None = None) -> Path:
    """A hub model the way the hub tools get it: from the local HF cache without touching the network; when it is
    missing there, downloaded if the hub answers a short reachability check (seconds), else one clear error.
    ``online=False`` or ``HF_HUB_OFFLINE=1`` forces the cache alone."""
    from huggingface_hub import constants, snapshot_download

    from selflen.env import hub_forced_offline, probe

    try:
        return Path(snapshot_download(repo_id, revision=revision, local_files_only=True))
    except Exception:
        pass
    endpoint = constants.ENDPOINT  # HF_ENDPOINT as the hub library read it
    if online is False or hub_forced_offline() or constants.is_offline_mode():
        why = "online use is off (online=false or HF_HUB_OFFLINE=1)"
    else:
        why = probe(endpoint) or ""
    hint = (f"run `huggingface-cli download {repo_id}` where the hub answers, "
            "or set model.source=local model.path=<folder>")
    if why:
        raise ModelNotFound(f"model {repo_id!r} is not in the local Hugging Face cache and {why}; {hint}")
    log.info("downloading %s from %s into the Hugging Face cache", repo_id, endpoint)
    try:
        return Path(snapshot_download(repo_id, revision=revision))
    except Exception as err:  # a gated or missing repository, a dropped connection: one line, not a traceback
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ModelNotFound(f"model {repo_id!r} could not be downloaded from {endpoint}: {first}; "
                            f"{hint}") from None


def resolve_model(
    source: str,
    path: str | None,
    *,
    cache_dir: Path | str | None = None,
    online: bool | None = None,
    chat_format: str | None = None,
    revision: str | None = None,
    seed: int = 0,
) -> Path:
    """Turn a model config (source + path) into a local folder."""
    if source == "embedded":
        return embedded_model_dir(cache_dir, path)
    if source == "tiny":
        return tiny_model_dir(cache_dir, seed=seed, chat_format=chat_format or "chatml")
    if source == "local":
        folder = Path(path or "").expanduser()
        if not (folder / "config.json").exists():
            raise ModelNotFound(f"model.path={path!r} has no config.json; point it at a saved transformers model")
        check_chat_template(folder)
        return folder
    if source == "hub":
        folder = hub_model_dir(str(path), online=online, revision=revision)
        check_chat_template(folder)
        return folder
    raise ModelNotFound(f"model.source={source!r} is unknown; use embedded, hub, local or tiny")


def merges_adapters(backend: Any) -> bool:
    """Whether trained LoRA adapters are served merged into model copies (``backend.merge_adapters`` of a
    ``BackendConfig``).

    ``auto`` merges for vLLM on a CPU, where a request carrying an adapter decodes two to three times slower than a
    plain one (``bench/lora_merge.py``); one engine start per role change costs less. On GPUs vLLM's LoRA kernels
    are fast and an engine start is slow, so adapters stay per request. Other backends serve adapters as they are.
    """
    if backend.name != "vllm" or backend.merge_adapters == "never":
        return False
    if backend.merge_adapters == "always":
        return True
    import torch

    return not torch.cuda.is_available()


def adapter_digest(adapter_dir: Path | str) -> str:
    """SHA-256 of a LoRA adapter's config and weights: a retrained adapter gets a new digest."""
    folder = Path(adapter_dir)
    h = hashlib.sha256()
    for name in ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin"):
        path = folder / name
        if path.exists():
            h.update(name.encode())
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()


def merged_model_dir(base_dir: Path | str, adapter_dir: Path | str, out_root: Path | str, label: str,
                     dtype: str = "float32", trust_remote_code: bool = False, before_build=None) -> Path:
    """The base model with a LoRA adapter folded into its weights, saved once as a full model folder.

    vLLM's CPU LoRA kernels make a request that carries an adapter about three times slower than one that does not
    (``bench/lora_merge.py``); a merged folder is served as a plain model instead. The folder is named by the
    adapter's digest, the base folder, the dtype and the recipe version (``<label>-<key>`` under ``out_root``), so a
    resumed or moved run reuses it and a retrained adapter is merged again; the older copies of ``label`` are then
    deleted. The weights are merged in float32 and saved in ``dtype`` (the engine's dtype as configured, with
    ``bf16_if_supported`` resolved and ``auto`` read as float32: casting before saving gives the engine the same
    numbers as casting after loading). ``before_build()`` runs only when a copy is built (the engine pool frees the
    running engine's memory there).
    """
    from selflen.dtypes import resolve_dtype

    dtype = resolve_dtype(dtype)
    dtype = "float32" if dtype == "auto" else dtype
    check_adapter(adapter_dir)
    recipe = f"{MERGE_VERSION}|{adapter_digest(adapter_dir)}|{Path(base_dir).resolve()}|{dtype}"
    key = hashlib.sha256(recipe.encode()).hexdigest()
    target = Path(out_root) / f"{label}-{key[:12]}"
    if (target / "config.json").exists():
        return target

    def build(tmp: Path) -> None:
        import torch
        from peft import PeftModel
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if before_build is not None:
            before_build()
        log.info("merging adapter %s into the base model: %s", adapter_dir, target)
        remote = {"trust_remote_code": trust_remote_code}
        base = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32, **remote)
        merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
        merged.to(getattr(torch, dtype)).save_pretrained(tmp)
        AutoTokenizer.from_pretrained(str(base_dir), **remote).save_pretrained(tmp)
        for extra in Path(base_dir).iterdir():  # a chat template file, remote modelling code: what the copy lacks
            wanted = extra.suffix in (".jinja", ".py") or extra.name == "chat_template.json"
            if wanted and extra.is_file() and not (tmp / extra.name).exists():
                shutil.copy(extra, tmp / extra.name)
        (tmp / "selflen_merge.json").write_text(
            json.dumps({"base": str(base_dir), "adapter": str(adapter_dir), "dtype": dtype, "key": key}, indent=1)
        )

    _provision(target, build)
    for old in Path(out_root).glob(f"{label}-*"):  # copies of an adapter since retrained, a killed merge's leftovers
        if old != target and not old.name.startswith(target.name):
            if old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink(missing_ok=True)
    return target
