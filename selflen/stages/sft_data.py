"""Step 3: training pairs in chat ``messages`` format (HF-loadable JSON lines).

Generator: instruction -> extended answer. Extender: the extend prompt over the *original* answer with each line
kept with probability ``p_keep_line`` (random line removal teaches it to add content) -> extended answer.

Config group ``sft_data`` (+ ``language.line_joiner``); prompt ``extend_<lang>.md``; rule
``selflen.text.remove_lines``. Files: ``gen_sft.jsonl`` and ``ext_sft.jsonl`` beside ``records.jsonl``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from selflen import prompts
from selflen.config import TrainConfig
from selflen.groups import SftDataConfig
from selflen.stages.common import Chat, StageResult, rng_for
from selflen.stages.extend import extend_prompt
from selflen.stages.records import Extension
from selflen.store import Stage, config_hash, write_jsonl
from selflen.text import remove_lines

GEN_FILE = "gen_sft.jsonl"
EXT_FILE = "ext_sft.jsonl"


@dataclass(frozen=True)
class SftDataSettings:
    sft_data: SftDataConfig
    joiner: str  # language.line_joiner
    language: str
    chat: Chat
    seed: int
    prompts: str  # fingerprint of the extend prompt template


def settings(cfg: TrainConfig) -> SftDataSettings:
    return SftDataSettings(sft_data=cfg.sft_data, joiner=cfg.language.line_joiner, language=cfg.language.name,
                           chat=Chat(cfg.model.system_prompt), seed=cfg.seed,
                           prompts=config_hash(prompts.load("extend", cfg.language.name).template))


def pair(chat: Chat, user: str, answer: str) -> list[dict[str, str]]:
    return [*chat.messages(user), {"role": "assistant", "content": answer}]


def run(stage: Stage, kept: Sequence[Extension], s: SftDataSettings, engine: None = None) -> StageResult:
    rows = list(kept)[: s.sft_data.max_examples] if s.sft_data.max_examples else list(kept)
    gen, ext = [], []
    for r in rows:
        gen.append({"id": r["id"], "messages": pair(s.chat, r["instruction"], r["extended"])})
        outline = remove_lines(r["response"], s.sft_data.p_keep_line, rng_for(s.seed, r["id"], "lines"),
                               joiner=s.joiner, rule=s.sft_data.line_removal)
        prompt = extend_prompt(r["instruction"], outline, s.language)
        ext.append({"id": r["id"], "messages": pair(s.chat, prompt, r["extended"])})
    write_jsonl(stage.dir / GEN_FILE, gen)
    write_jsonl(stage.dir / EXT_FILE, ext)
    return StageResult(counts={"gen_examples": len(gen), "ext_examples": len(ext)})


def paths(stage_dir: Path) -> tuple[Path, Path]:
    return stage_dir / GEN_FILE, stage_dir / EXT_FILE
