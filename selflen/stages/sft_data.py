"""Training pairs in chat ``messages`` format (HF-loadable JSON lines).

Generator: instruction -> extended answer. Extender: the extend prompt over the *original* answer with each line
kept with probability ``p_keep`` (random line removal teaches it to add content) -> extended answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from selflen.stages.common import Chat, rng_for
from selflen.stages.extend import extend_prompt
from selflen.store import Stage, write_jsonl
from selflen.text import remove_lines

GEN_FILE = "gen_sft.jsonl"
EXT_FILE = "ext_sft.jsonl"


def pair(chat: Chat, user: str, answer: str) -> list[dict[str, str]]:
    return [*chat.messages(user), {"role": "assistant", "content": answer}]


def run(
    stage: Stage,
    kept: Sequence[dict],
    *,
    chat: Chat,
    p_keep: float,
    joiner: str,
    language: str,
    seed: int,
    limit: int | None = None,
) -> dict:
    rows = list(kept)[:limit] if limit else list(kept)
    gen, ext = [], []
    for r in rows:
        gen.append({"id": r["id"], "messages": pair(chat, r["instruction"], r["extended"])})
        outline = remove_lines(r["response"], p_keep, rng_for(seed, r["id"], "lines"), joiner=joiner)
        ext.append(
            {"id": r["id"], "messages": pair(chat, extend_prompt(r["instruction"], outline, language), r["extended"])}
        )
    write_jsonl(stage.dir / GEN_FILE, gen)
    write_jsonl(stage.dir / EXT_FILE, ext)
    return {"counts": {"gen_examples": len(gen), "ext_examples": len(ext)}}


def paths(stage_dir: Path) -> tuple[Path, Path]:
    return stage_dir / GEN_FILE, stage_dir / EXT_FILE
