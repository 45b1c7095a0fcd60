"""Deduplication: exact (after :func:`normalise`) and near-duplicate (MinHash LSH over shingles)."""

from __future__ import annotations

import functools
import hashlib
import random
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from selflen.text.scripts import ANY_CJK, char_class

if TYPE_CHECKING:  # numpy is only needed (and imported) when deduplicating
    import numpy as np

__all__ = ["dedup_mask", "normalise", "shingles"]


# A shingle token: one CJK character (``scripts.ANY_CJK``), or a run of other non-space characters.
_SHINGLE_UNIT_RE = re.compile(char_class(ANY_CJK) + "|" + char_class("\\s", ANY_CJK, negate=True) + "+")


def normalise(text: str) -> str:
    """Lower-case and collapse whitespace: the form in which two texts count as exact duplicates.

    >>> normalise("  Hello\\n\\n  World ")
    'hello world'
    """
    return " ".join(text.lower().split())


def shingles(text: str, n: int = 5) -> set[str]:
    """The set of ``n``-token shingles of the normalised text (the unit of near-duplicate Jaccard).

    Tokens are CJK/kana/Hangul characters one by one and whitespace-separated runs of anything else, so
    Chinese text without spaces still gets meaningful shingles. A text shorter than ``n`` tokens gives one
    shingle (itself); an empty text gives the empty set.

    >>> sorted(shingles("A b C d", 3))
    ['a b c', 'b c d']
    >>> sorted(shingles("你好吗", 2))
    ['你 好', '好 吗']
    >>> shingles("short", 5)
    {'short'}
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    tokens = _SHINGLE_UNIT_RE.findall(normalise(text))
    if not tokens:
        return set()
    if len(tokens) < n:
        return {" ".join(tokens)}
    return {" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


def _stable_hash64(s: str) -> int:
    return int.from_bytes(hashlib.blake2b(s.encode("utf-8"), digest_size=8).digest(), "little")


def _shingle_hashes(text: str, n: int) -> np.ndarray:
    import numpy as np

    return np.unique(np.fromiter((_stable_hash64(s) for s in shingles(text, n)), dtype=np.uint64))


def _minhash(hashes: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """MinHash signature: per seed, min over shingles of a splitmix64 mix of ``hash XOR seed``."""
    import numpy as np

    if hashes.size == 0:
        return np.full(seeds.shape, np.iinfo(np.uint64).max, dtype=np.uint64)
    z = hashes[None, :] ^ seeds[:, None]
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return z.min(axis=1)


def _band_rows(num_perm: int, threshold: float) -> int:
    """Rows per LSH band: the largest divisor of ``num_perm`` still catching a pair at ``threshold`` w.p. ≥ 0.99.

    >>> _band_rows(64, 0.8)
    4
    """
    for rows in sorted((r for r in range(1, num_perm + 1) if num_perm % r == 0), reverse=True):
        bands = num_perm // rows
        if 1.0 - (1.0 - threshold**rows) ** bands >= 0.99:
            return rows
    return 1


def _jaccard(a: np.ndarray, b: np.ndarray) -> float:
    import numpy as np

    if a.size == 0 and b.size == 0:
        return 1.0
    inter = np.intersect1d(a, b, assume_unique=True).size
    return inter / (a.size + b.size - inter)


def dedup_mask(
    texts: Sequence[str], threshold: float = 0.8, n: int = 5, num_perm: int = 64, seed: int = 0
) -> list[bool]:
    """Which texts to keep so that no exact or near duplicate of an earlier kept text survives.

    Exact duplicates are compared after :func:`normalise`. Near duplicates are found with MinHash
    (``num_perm`` splitmix64 permutations of blake2b shingle hashes) and LSH banding, and confirmed by the
    exact Jaccard similarity of the shingle sets (``>= threshold``). Texts are visited in order and each
    is compared with the texts kept so far, so the first of each cluster is kept. Deterministic: no
    process-salted ``hash()`` is used; ``seed`` only picks the permutations.

    >>> dedup_mask(["Same text.", "same   TEXT.", "Different."])
    [True, False, True]
    """
    import numpy as np

    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    if num_perm < 1:
        raise ValueError(f"num_perm must be >= 1, got {num_perm}")
    srng = random.Random(seed)
    seeds = np.array([srng.getrandbits(64) for _ in range(num_perm)], dtype=np.uint64)
    rows = _band_rows(num_perm, threshold)
    bands = num_perm // rows

    @functools.lru_cache(maxsize=512)
    def hashes_of(i: int) -> np.ndarray:
        return _shingle_hashes(texts[i], n)

    seen_exact: set[str] = set()
    buckets: dict[tuple[int, bytes], list[int]] = {}
    mask: list[bool] = []
    for i, text in enumerate(texts):
        norm = normalise(text)
        if norm in seen_exact:
            mask.append(False)
            continue
        seen_exact.add(norm)
        sig = _minhash(hashes_of(i), seeds)
        keys = [(b, sig[b * rows : (b + 1) * rows].tobytes()) for b in range(bands)]
        candidates = sorted({j for key in keys for j in buckets.get(key, ())})
        if any(_jaccard(hashes_of(i), hashes_of(j)) >= threshold for j in candidates):
            mask.append(False)
            continue
        mask.append(True)
        for key in keys:
            buckets.setdefault(key, []).append(i)
    return mask
