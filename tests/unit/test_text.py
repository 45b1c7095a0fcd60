"""Hand-computed cases for every text rule in ``selflen.text`` (both languages)."""

from __future__ import annotations

import random

import pytest

from selflen import text as T

pytestmark = pytest.mark.unit

EN_RULES = T.FilterRules(T.LLAMA_END_PUNCT, 10, "whitespace", T.META_WORDS)
ZH_RULES = T.FilterRules(T.QWEN_END_PUNCT, 13, "cjk", ())


# ---------------------------------------------------------------- word counting


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", 0),
        ("   \n ", 0),
        ("The quick brown fox.", 4),
        ("你好，世界。", 6),  # CJK punctuation counts in W
        ("我爱Python编程", 5),
        ("ＡＢＣ", 3),  # full-width letters are in U+FF00–FFEF
        ("“Quoted” text…", 2),  # curly quotes / ellipsis attach to neighbours
        ("ひらがな", 1),  # kana, Hangul and Ext A are not counted per character in W
        ("한국어 문장", 2),
        ("㐀㐁", 1),
    ],
)
def test_count_words_longen(text: str, expected: int) -> None:
    assert T.count_words_longen(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", 0),
        ("The quick brown fox.", 4),
        ("don't stop", 2),
        ("rock’n’roll state-of-the-art", 2),
        ("3.5 apples", 3),
        ("你好，世界。", 4),  # punctuation counts 0
        ("「引用」", 2),
        ("ひらがなとカタカナ", 9),
        ("한국어 문장", 5),
        ("㐀㐁", 2),  # Ext A counts
        ("我爱Python编程", 5),
        ("हिन्दी भाषा", 2),  # combining marks stay inside words
        ("___", 1),
    ],
)
def test_count_words_unicode(text: str, expected: int) -> None:
    assert T.count_words_unicode(text) == expected


def test_count_words_dispatch() -> None:
    assert T.count_words("你好。") == 3
    assert T.count_words("你好。", "unicode") == 2
    with pytest.raises(ValueError, match="longen, unicode"):
        T.count_words("x", "bogus")


# ---------------------------------------------------------------- splitting


def test_split_sentences_lossless_and_cjk() -> None:
    text = "First one. Second?  Third!\n\n第一句。第二句！“第三句？”Last"
    pieces = T.split_sentences(text)
    assert "".join(pieces) == text
    assert [p.strip() for p in pieces] == [
        "First one.",
        "Second?",
        "Third!",
        "第一句。",
        "第二句！",
        "“第三句？”",
        "Last",
    ]
    assert T.split_sentences("") == []
    assert T.split_sentences("No ending") == ["No ending"]
    assert T.split_sentences("\n\nLeading blank. Then.") == ["\n\nLeading blank. ", "Then."]


def test_paragraph_half_reference() -> None:
    assert T.first_part("A\n\nB\n\nC\n\nD\n\nE", "paragraph_half") == "A\n\nB"
    # two paragraphs -> falls back to lines, joined with "\n"
    assert T.first_part("A\nB\n\nC\nD", "paragraph_half") == "A\nB"
    assert T.first_part("One single line.", "paragraph_half") == ""
    assert T.first_part("L1\nL2\nL3", "paragraph_half") == "L1"


def test_sentence_half() -> None:
    assert T.first_part("S1. S2. S3. S4. S5.", "sentence_half") == "S1. S2."
    assert T.first_part("S1. S2.", "sentence_half") == "S1."
    assert T.first_part("Only one sentence.", "sentence_half") == ""
    assert T.first_part("一。二。三。四。", "sentence_half") == "一。二。"
    assert T.first_part("Title\nBody one. Body two. Body three.", "sentence_half") == "Title\nBody one."


def test_word_ratio() -> None:
    text = "a b c. d e f g h i j"
    # 10 words, half = 5 -> word "e"; last sentence end at/before it is after "c."
    assert T.first_part(text, "word_ratio", 0.5) == "a b c."
    # no boundary inside the part -> cut at the word
    assert T.first_part("a b c d e f g h", "word_ratio", 0.5) == "a b c d"
    # a line break is a boundary
    assert T.first_part("x y\nz w v u", "word_ratio", 0.5) == "x y"
    # a boundary exactly at the cut word counts
    assert T.first_part("a b. c d.", "word_ratio", 0.5) == "a b."
    # Chinese: each character is a word (W units)
    assert T.first_part("一二。三四五六", "word_ratio", 0.5) == "一二。"
    assert T.first_part("word", "word_ratio", 0.5) == ""
    assert T.first_part("a b c.", "word_ratio", 1.0) == "a b c."
    with pytest.raises(ValueError):
        T.first_part("a", "word_ratio", 0.0)


def test_first_part_unknown_strategy() -> None:
    with pytest.raises(ValueError, match="paragraph_half, sentence_half, word_ratio"):
        T.first_part("x", "halves")
    assert T.SPLIT_STRATEGIES == ("paragraph_half", "sentence_half", "word_ratio")


def test_keep_leading() -> None:
    assert T.keep_leading("P1\n\nP2\n\nP3\n\nP4\n\nP5\n\nP6") == "P1\n\nP2\n\nP3\n\nP4"
    assert T.keep_leading("P1\n\nP2") == "P1"  # floor(4/3) = 1
    assert T.keep_leading("P1\n\n\n\nP2\n\nP3") == "P1\n\n\n\nP2"  # blank pieces are not paragraphs
    # single-paragraph A: the reference returned "", we cut by sentences
    assert T.keep_leading("One. Two. Three. Four.") == "One. Two."
    assert T.keep_leading("第一句。第二句。第三句。") == "第一句。第二句。"
    assert T.keep_leading("One. Two.") == "One."  # >= 2 units keeps at least one
    assert T.keep_leading("Only one.") == "Only one."
    assert T.keep_leading("") == ""
    assert T.keep_leading("  \n\n ") == ""


# ---------------------------------------------------------------- filters


def test_ends_with_punct() -> None:
    assert T.ends_with_punct("An answer.", T.LLAMA_END_PUNCT)
    assert not T.ends_with_punct("An answer.", T.QWEN_END_PUNCT)  # reference Qwen set has no ASCII "."
    assert T.ends_with_punct("一个回答。\n", T.QWEN_END_PUNCT)
    assert not T.ends_with_punct("cut off mid", T.LLAMA_END_PUNCT)
    assert not T.ends_with_punct("", T.LLAMA_END_PUNCT)


def test_repeated_ngram_whitespace() -> None:
    words = " ".join(f"w{i}" for i in range(30))
    assert not T.repeated_ngram(words, 10)
    assert T.repeated_ngram(words + " " + " ".join(f"w{i}" for i in range(10)), 10)
    assert not T.repeated_ngram(words + " " + " ".join(f"w{i}" for i in range(9)), 10)
    assert T.repeated_ngram("a a a a a a a a a a a", 10)  # overlapping windows count
    assert not T.repeated_ngram("", 3)


def test_repeated_ngram_cjk() -> None:
    assert T.repeated_ngram("甲乙丙丁戊己庚辛壬癸子丑寅。甲乙丙丁戊己庚辛壬癸子丑寅！", 13, "cjk")
    assert not T.repeated_ngram("甲乙丙丁戊己庚辛壬癸子丑寅。甲乙丙丁戊己庚辛壬癸子丑卯！", 13, "cjk")
    # an ASCII run is one token: 用 / "AI model " / 做 / 事 is a repeated 4-token window, not a 5-token one
    assert T.repeated_ngram("用AI model 做事，用AI model 做事", 4, "cjk")
    assert not T.repeated_ngram("用AI model 做事，用AI model 做事", 5, "cjk")
    assert T.repeated_ngram("xx好的xx好的", 3, "cjk")
    with pytest.raises(ValueError):
        T.repeated_ngram("x", 3, "chars")
    with pytest.raises(ValueError):
        T.repeated_ngram("x", 0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Here is the revised essay:\nBody.", True),
        ("Response:\nBody text.", True),  # capitalised: the reference missed it
        ("Body.\nMore.\nI hope this VERSION helps.", True),
        ("The conversion of energy.\nBody.", False),  # substring false positive in the reference
        ("Many responses and paragraphs.\nBody.", False),
        ("Line 1\nLine 2\nthe version is in line 3\nLine 4\nLine 5\nLine 6", False),  # outside head/tail
        ("\n\n\nFirst\n\n\nrevision notes\nBody\nA\nB\nC", True),  # blank lines don't use up the head
        ("", False),
    ],
)
def test_meta_text(text: str, expected: bool) -> None:
    assert T.meta_text(text, T.META_WORDS) is expected


def test_meta_text_cjk_substring() -> None:
    assert T.meta_text("以下是修改后的文章：\n正文。", ("修改后",))
    assert not T.meta_text("正文。", ("修改后",))
    assert not T.meta_text("anything", ())


def test_check_response_languages() -> None:
    en = "This is a complete English answer about the sea."
    zh = "这是一个关于大海的完整回答。"
    assert T.check_response(en, EN_RULES) is None
    assert T.check_response(en, ZH_RULES) == T.REASON_END_PUNCT  # Chinese set rejects "."
    assert T.check_response(zh, ZH_RULES) is None
    assert T.check_response("   ", EN_RULES) == T.REASON_EMPTY
    assert T.check_response("Here is the revised text.", EN_RULES) == T.REASON_META_TEXT
    rep = " ".join(f"w{i}" for i in range(12))
    assert T.check_response(f"{rep} {rep}.", EN_RULES) == T.REASON_REPEATED_NGRAM
    assert T.check_response("Unfinished sentence", EN_RULES) == T.REASON_END_PUNCT
    strict = T.FilterRules(None, 0, "whitespace", (), min_words=5)
    assert T.check_response("Two words", strict) == T.REASON_TOO_SHORT
    assert T.check_response("one two three four five", strict) is None  # end rule off
    assert set(T.REASONS) == {"empty", "too_short", "end_punct", "repeated_ngram", "meta_text"}


def test_filter_rules_validation() -> None:
    with pytest.raises(ValueError):
        T.FilterRules(".", -1, "whitespace", ())
    with pytest.raises(ValueError):
        T.FilterRules(".", 3, "bogus", ())
    with pytest.raises(ValueError):
        T.FilterRules(".", 3, "cjk", (), counter="bogus")
    assert T.FilterRules(".", 3, "cjk", ["a"]).meta_words == ("a",)  # type: ignore[arg-type]


def test_accept_extension() -> None:
    assert T.accept_extension(100, 121, 1.2)
    assert not T.accept_extension(100, 120, 1.2)  # strict, like the reference
    assert T.accept_extension(0, 1, 1.2)
    assert not T.accept_extension(0, 0, 1.2)


# ---------------------------------------------------------------- length-biased sampling


def test_keep_probability() -> None:
    assert T.keep_probability(1.0) == 0.0
    assert T.keep_probability(0.5) == pytest.approx(0.75)
    assert T.keep_probability(0.25) == pytest.approx(1 - 2 / 64)
    assert T.keep_probability(0.8) == 0.0  # clipped at zero


def test_length_biased_keep_statistics() -> None:
    n = 20000
    lengths = list(range(n))
    random.Random(7).shuffle(lengths)
    keep = T.length_biased_keep(lengths, random.Random(1234))
    assert len(keep) == n
    assert abs(sum(keep) / n - 0.595) < 0.01
    by_len = dict(zip(lengths, keep, strict=True))
    assert not any(by_len[x] for x in range(int(0.2 * n)))  # shortest 20% always dropped
    top = [by_len[x] for x in range(int(0.9 * n), n)]
    assert sum(top) / len(top) >= 0.99
    assert T.length_biased_keep(lengths, random.Random(1234)) == keep  # deterministic for a seed


def test_length_biased_keep_ties_share_lowest_index() -> None:
    class Recorder(random.Random):
        def __init__(self) -> None:
            super().__init__(0)
            self.calls = 0

        def random(self) -> float:
            self.calls += 1
            return 0.5

    # sorted: [1, 2, 2, 2] -> first index of 2 is 1, r = 1 - 1/4 = 0.75, 2r^3 = 0.84375 > 0.5 -> dropped
    rng = Recorder()
    assert T.length_biased_keep([2, 1, 2, 2], rng) == [False, False, False, False]
    assert rng.calls == 4  # one draw per item
    # N = 8: index 3 -> r = 0.625, 2r^3 = 0.488 < 0.5 -> kept; the 9s share index 4 -> r = 0.5 -> kept
    rng = Recorder()
    assert T.length_biased_keep([1, 2, 3, 4, 9, 9, 9, 9], rng) == [False] * 3 + [True] * 5
    # seven tied shortest items all get r = 1 (index 0), although the last of them sorts at index 6
    rng = Recorder()
    assert T.length_biased_keep([1, 1, 1, 1, 1, 1, 1, 9], rng) == [False] * 7 + [True]
    assert T.length_biased_keep([], random.Random(0)) == []


# ---------------------------------------------------------------- line removal


def test_remove_lines_identity_and_joiner() -> None:
    text = "Title\n\nLine one\nLine two\n\nLine three"
    assert T.remove_lines(text, 1.0, random.Random(0)) == text
    assert T.remove_lines("a\nb", 1.0, random.Random(0), joiner="\n\n") == "a\n\nb"


def test_remove_lines_fraction() -> None:
    lines = [f"line {i}" for i in range(5000)]
    out = T.remove_lines("\n".join(lines), 0.8, random.Random(3))
    kept = out.split("\n")
    assert set(kept) <= set(lines)
    assert abs(len(kept) / len(lines) - 0.8) < 0.02
    assert T.remove_lines("\n".join(lines), 0.8, random.Random(3)) == out


def test_remove_lines_keeps_one_and_no_gaps() -> None:
    for seed in range(20):
        out = T.remove_lines("only\nlines\nhere", 0.0, random.Random(seed))
        assert out in {"only", "lines", "here"}
    assert T.remove_lines("", 0.5, random.Random(0)) == ""
    # dropping a whole paragraph does not leave a double blank line behind
    out = T.remove_lines("A\n\nB\n\nC", 0.0, random.Random(0))
    assert "\n\n\n" not in out and out.strip() in {"A", "B", "C"} and out == out.strip()
    with pytest.raises(ValueError):
        T.remove_lines("a", 1.5, random.Random(0))


# ---------------------------------------------------------------- dedup


def test_shingles() -> None:
    assert T.shingles("A  B\nc d e f", 5) == {"a b c d e", "b c d e f"}
    assert T.shingles("", 5) == set()
    assert T.shingles("你好世界", 3) == {"你 好 世", "好 世 界"}


def _essay(seed: int, n: int = 120) -> str:
    rng = random.Random(seed)
    vocab = [f"tok{i}" for i in range(2000)]
    return " ".join(rng.choice(vocab) for _ in range(n))


def test_dedup_exact_near_distinct() -> None:
    a = _essay(1)
    b = _essay(2)
    words = a.split()
    near = list(words)
    near[60] = "changed"  # one word changed in 120: Jaccard of 5-shingles ~ 0.92
    c = _essay(3)
    texts = [a, "  " + a.upper() + "\n", b, " ".join(near), c, b]
    assert T.dedup_mask(texts) == [True, False, True, False, True, False]
    assert T.dedup_mask([]) == []


def test_dedup_threshold_and_chinese() -> None:
    zh = "春天来了，万物复苏，小草从地里探出头来，花儿也慢慢开放了，人们脱下厚厚的冬衣走出家门。" * 2
    zh_near = zh.replace("小草", "嫩草", 1)
    zh_other = "秋天的果园里，苹果挂满枝头，农民们忙着采摘，脸上洋溢着丰收的喜悦，孩子们在树下奔跑嬉戏。"
    assert T.dedup_mask([zh, zh_near, zh_other]) == [True, False, True]
    a = _essay(10)
    half = " ".join(a.split()[:60] + _essay(11).split()[:60])
    assert T.dedup_mask([a, half]) == [True, True]  # Jaccard ~ 0.3
    assert T.dedup_mask([a, half], threshold=0.2) == [True, False]
    with pytest.raises(ValueError):
        T.dedup_mask([a], threshold=0.0)


# ---------------------------------------------------------------- judge parsing


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("yes", True),
        ("Yes.", True),
        ("YES!", True),
        ("**Yes**", True),
        ('"yes"', True),
        ("yes, because it asks for a long essay", True),
        ("Answer: Yes", True),
        ("no", False),
        ("No.", False),
        ("**No**", False),
        ("> no, it is too short", False),
        ("Not suitable.", False),
        ("是", True),
        ("是的", True),
        ("是的，这个指令适合。", True),
        ("适合", True),
        ("否", False),
        ("不是", False),
        ("不适合。", False),
        ("答案：否", False),
        ("Yes/No", None),
        ("yes or no", None),
        ("是否", None),
        ("是/否", None),
        ("Maybe", None),
        ("I think yes", None),
        ("yesterday", None),
        ("nothing", None),
        ("", None),
        ("不错", None),
    ],
)
def test_parse_yes_no(text: str, expected: bool | None) -> None:
    assert T.parse_yes_no(text) is expected
