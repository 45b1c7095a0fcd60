"""N-gram overlap decontamination of generated instructions against benchmark prompts (LonGen, LongBench-Write)."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator
from pathlib import Path

from selflen.benchmark_files import BENCHMARK_SPECS
from selflen.benchmark_files import resolve_data_dir as default_data_dir
from selflen.jsonl import read_jsonl
from selflen.text.scripts import SINGLE_CHAR_TOKENS

__all__ = ["Decontaminator", "benchmark_prompts", "default_data_dir", "is_cjk_text", "tokenize"]

_CJK_RANGES = SINGLE_CHAR_TOKENS  # kana, CJK ideographs, Hangul syllables: one token per character
_CJK_CHAR = re.compile(f"([{_CJK_RANGES}])")
_CJK_ONLY = re.compile(f"^[{_CJK_RANGES}]$")
_WORD = re.compile(r"[^\W_]+")
# Share of CJK tokens from which a text is treated as CJK (character n-grams with ``n_cjk``).
_CJK_SHARE = 1 / 3


def tokenize(text: str) -> list[str]:
    """NFKC-normalise and lower-case ``text``; each CJK char and each other word is a token, punctuation dropped."""
    text = unicodedata.normalize("NFKC", text).lower()
    return _WORD.findall(_CJK_CHAR.sub(r" \1 ", text))


def is_cjk_text(tokens: list[str]) -> bool:
    """Whether a token list is mostly CJK (at least a third of its tokens are CJK characters)."""
    if not tokens:
        return False
    cjk = sum(1 for tok in tokens if _CJK_ONLY.match(tok))
    return cjk >= _CJK_SHARE * len(tokens)


def _grams(tokens: list[str], n: int) -> Iterator[tuple[str, ...]]:
    """Contiguous ``n``-grams of ``tokens``; a non-empty sequence shorter than ``n`` yields itself once."""
    if len(tokens) < n:
        if tokens:
            yield tuple(tokens)
        return
    for i in range(len(tokens) - n + 1):
        yield tuple(tokens[i : i + n])


def benchmark_prompts(data_dir: str | Path) -> list[str]:
    """The prompts of every benchmark in ``selflen.benchmark_files.BENCHMARK_SPECS`` found under ``data_dir`` ([] if
    none)."""
    root = Path(data_dir)
    prompts: list[str] = []
    for spec in BENCHMARK_SPECS.values():
        file, field = root / spec.relpath, spec.prompt_field
        if not file.is_file():
            continue
        for row in read_jsonl(file, strict=True):  # a bad line is a RowError naming FILE:LINE
            value = row.get(field)
            if isinstance(value, str) and value.strip():
                prompts.append(value)
    return prompts


class Decontaminator:
    """Set of hashed n-grams of reference texts; flags texts that share n-grams with them.

    Latin-script text uses word ``n``-grams; CJK text (see :func:`is_cjk_text`) uses character ``n_cjk``-grams.
    References are indexed under both sizes so a text is always compared at the size its own script calls for.
    """

    def __init__(self, references: Iterable[str], n: int = 8, n_cjk: int = 13) -> None:
        if n < 1 or n_cjk < 1:
            raise ValueError(f"n-gram sizes must be positive, got n={n}, n_cjk={n_cjk}")
        self.n = n
        self.n_cjk = n_cjk
        self._hashes: set[int] = set()
        self.num_references = 0
        for ref in references:
            self.add(ref)

    @classmethod
    def from_data_dir(cls, data_dir: str | Path, **kw: int) -> Decontaminator:
        """Build from every benchmark prompt under ``data_dir`` (see :func:`benchmark_prompts`)."""
        return cls(benchmark_prompts(data_dir), **kw)

    @staticmethod
    def _hash(n: int, gram: tuple[str, ...]) -> int:
        return hash((n, gram))

    def add(self, reference: str) -> None:
        """Index one more reference text."""
        tokens = tokenize(reference)
        for size in {self.n, self.n_cjk}:
            self._hashes.update(self._hash(size, g) for g in _grams(tokens, size))
        self.num_references += 1

    @property
    def size(self) -> int:
        """Number of distinct hashed n-grams indexed."""
        return len(self._hashes)

    def overlaps(self, text: str) -> int:
        """Number of the text's n-grams (with repetition) that occur in the references."""
        tokens = tokenize(text)
        size = self.n_cjk if is_cjk_text(tokens) else self.n
        return sum(1 for g in _grams(tokens, size) if self._hash(size, g) in self._hashes)

    def is_contaminated(self, text: str, min_hits: int = 1) -> bool:
        """Whether ``text`` shares at least ``min_hits`` n-grams with the references."""
        return self.overlaps(text) >= min_hits
