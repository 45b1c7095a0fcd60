"""The run's final model as one folder that transformers and ``vllm serve`` load without PEFT: the final adapter
folded into the base model's weights (``selflen.models.merged_model_dir``, the recipe the CPU engine pool uses),
saved as safetensors with the tokenizer, the chat template, the generation config and a model card.

The final model is the length-following model (``final/finetune``); a run without the final SFT exports the last
Generator it trained. A fully fine-tuned folder (``finetune=full``) is copied as it is.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from selflen.addresses import FINAL
from selflen.models import adapter_digest, check_chat_template, merged_model_dir, resolve_model
from selflen.report import cards
from selflen.store import LENGTH_FOLLOWER, RunLayout, read_json

MERGED = "merged"


def final_trained(layout: RunLayout) -> tuple[Path, str]:
    """The folder of the run's final model (an adapter or a full model) and which role it is."""
    folder = layout.trained(LENGTH_FOLLOWER, FINAL)
    if folder is not None:
        return folder, LENGTH_FOLLOWER
    folder, k = layout.current("gen", max(layout.iterations(), default=0))
    if folder is None:
        from selflen.export.data import ExportError

        raise ExportError(f"{layout.root} holds no trained model (no final/finetune, no finetune_gen): "
                          "nothing to merge")
    return folder, f"gen{k}"


def base_folder(cfg: dict[str, Any], online: bool | None = None) -> Path:
    """The run's base model as a local folder, the way the run got it (cache, embedded conversion, tiny build);
    ``online=False`` reads the cache alone."""
    m = cfg["model"]
    online = cfg.get("online") if online is None else online
    return resolve_model(m["source"], m.get("path"), cache_dir=cfg.get("paths", {}).get("cache_dir"),
                         online=online, chat_format=m.get("chat_format"), revision=m.get("revision"),
                         seed=cfg.get("seed", 0))


def cached_base_folder(cfg: dict[str, Any]) -> Path | None:
    """The base model's folder when it is on this machine (for the data cards' model hash), else None."""
    from selflen.models import ModelNotFound

    try:
        return base_folder(cfg, online=False)
    except (ModelNotFound, KeyError):
        return None


def export_merged(layout: RunLayout, out: Path, dtype: str | None = None) -> Path:
    """Write ``out/merged``: the final model as a full safetensors folder with a model card; returns it."""
    cfg = read_json(layout.config_path)
    if not cfg:
        from selflen.export.data import ExportError

        raise ExportError(f"{layout.config_path} is missing: give the folder of a run that train.py wrote")
    trained, role = final_trained(layout)
    base = base_folder(cfg)
    dtype = dtype or cfg["model"].get("dtype") or "float32"
    target = out / MERGED
    out.mkdir(parents=True, exist_ok=True)
    if target.exists():
        shutil.rmtree(target)
    if trained.name == "model":  # full fine-tuning: already a whole model
        shutil.copytree(trained, target, ignore=shutil.ignore_patterns("*.checkpoints", "checkpoint-*"))
    else:
        built = merged_model_dir(base, trained, out, MERGED, dtype,
                                 trust_remote_code=bool(cfg["model"].get("trust_remote_code")))
        built.replace(target)
        for leftover in out.glob(f"{MERGED}-*"):  # the build lock
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)
    ensure_generation_config(target, base)
    check_chat_template(target)
    write_model_card(target, layout, cfg, trained, role, dtype, base)
    return target


def ensure_generation_config(folder: Path, base: Path) -> None:
    """A ``generation_config.json`` in ``folder``: the base model's, else one naming the tokenizer's end of turn."""
    if (folder / "generation_config.json").is_file():
        return
    if (base / "generation_config.json").is_file():
        shutil.copy(base / "generation_config.json", folder / "generation_config.json")
        return
    from transformers import AutoTokenizer, GenerationConfig

    tok = AutoTokenizer.from_pretrained(str(folder))
    GenerationConfig(eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id).save_pretrained(str(folder))


def write_model_card(folder: Path, layout: RunLayout, cfg: dict[str, Any], trained: Path, role: str,
                     dtype: str, base: Path) -> Path:
    """The merged model's card: what it is, how it was made (adapter, its digest, the stage hash, training
    statistics), how to load and serve it, and the licence."""
    name = str(cfg["model"].get("name", "unknown"))
    stage = trained.parent
    manifest = read_json(stage / "done.json") or {}
    meta = {"base_model": name, "library_name": "transformers", "license": cards.licence_for(name),
            "pipeline_tag": "text-generation",
            "tags": [cards.PROJECT, "self-lengthen", "long-form-generation", "merged", f"base_model:merge:{name}"]}
    made = {"run": str(layout.root), "base config.json sha256": cards.file_sha256(base / "config.json"),
            "trained folder": layout.rel(trained), "role": role,
            "adapter sha256": adapter_digest(trained) if trained.name == "adapter" else None,
            "stage": layout.rel(stage), "stage hash": manifest.get("config_hash"), "dtype": dtype,
            "seed": cfg.get("seed"), "git commit": manifest.get("git_commit")}
    text = "".join([
        cards._front_matter(meta),
        f"# selflen final model ({name})\n\n",
        f"`{name}` fine-tuned by `{cards.PROJECT}`'s Self-Lengthen loop ({cards.PAPER}) to write long answers and "
        f"follow length constraints: {cards.ROLE_TEXT[LENGTH_FOLLOWER if role == LENGTH_FOLLOWER else 'gen']}. "
        "The trained LoRA adapter is folded into the weights, so the folder loads without PEFT.\n\n",
        "## Load and serve\n\n",
        f'```python\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n\n'
        f'model = AutoModelForCausalLM.from_pretrained("{folder}")\n'
        f'tokenizer = AutoTokenizer.from_pretrained("{folder}")\n```\n\n',
        f"```bash\nvllm serve {folder} --served-model-name selflen-final\n```\n\n",
        "## How it was made\n\n", cards._kv_table({k: v for k, v in made.items() if v is not None}), "\n",
        "## Training\n\n", cards._kv_table(dict(manifest.get("train") or {}), "statistic"), "\n",
        "## Sampling the run used\n\n", cards._kv_table(dict(cfg.get("sampling") or {}), "parameter"), "\n",
        "## Licence\n\n", cards.default_licence_note(name), "\n",
    ])
    path = cards._write(folder, text)
    (folder / "selflen_export.json").write_text(json.dumps({k: v for k, v in made.items() if v is not None},
                                                           indent=1) + "\n")
    return path
