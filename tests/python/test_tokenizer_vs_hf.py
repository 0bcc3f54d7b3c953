"""Differential test: graft's tokenizer against HuggingFace `tokenizers` on the same tokenizer.json.

For every tokenizer of the test data (the fixtures, the facts models) and for variants of them that
take the shapes real models use (Llama 3 / Qwen 2 split regexes, Llama 2 / Gemma normalizers,
NFC, added tokens with lstrip / rstrip / single_word / normalized, other Metaspace schemes), seeded
random strings are encoded and decoded by both and must agree exactly. A sweep over all code points
of planes 0-3 and 14, on tokenizers whose merges make every pre-tokenizer split visible in the ids,
checks the Unicode tables.
"""

import copy
import json
import os
import random
from pathlib import Path

import pytest

tokenizers = pytest.importorskip("tokenizers", reason="HF `tokenizers` is not installed; it is the reference")
import graft  # noqa: E402,F401  (the package; the tokenizer lives in its native module)
from graft import _graft  # noqa: E402

GraftTokenizer = _graft.Tokenizer
HfTokenizer = tokenizers.Tokenizer

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("GRAFT_TEST_DATA", REPO / "tests" / "data"))
MODELS = Path(os.environ.get("GRAFT_MODELS_DIR", REPO / "models"))

METASPACE = DATA / "tokenizers" / "metaspace_bpe" / "tokenizer.json"
BYTELEVEL = DATA / "tokenizers" / "bytelevel_bpe" / "tokenizer.json"
REAL_FILES = {
    "metaspace_bpe": METASPACE,
    "bytelevel_bpe": BYTELEVEL,
    "llama_facts": DATA / "facts" / "llama_facts" / "tokenizer.json",
    "gpt2_facts": DATA / "facts" / "gpt2_facts" / "tokenizer.json",
    "gemma4_facts": MODELS / "gemma4_facts" / "tokenizer.json",
}

GPT2_REGEX = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")

STRINGS_PER_TOKENIZER = 1000
RANDOM_ID_LISTS = 300


def load(path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def added(content, special=False, normalized=None, lstrip=False, rstrip=False, single_word=False, id=0):
    return {"id": id, "content": content, "single_word": single_word, "lstrip": lstrip, "rstrip": rstrip,
            "normalized": (not special) if normalized is None else normalized, "special": special}


# Added tokens exercising HF's matching rules; their ids are assigned by the library, not by "id".
EXTRA_ADDED_TOKENS = [
    added("<|tool|>", special=True, lstrip=True),
    added("[MASK]", special=True, rstrip=True),
    added("<|x|>", special=True, lstrip=True, rstrip=True),
    added("word", single_word=True),
    added("é", single_word=True),
    added("the cat"),
    added("<0x41>"),
    added("  ", normalized=False),
    added("ab", normalized=False, single_word=True),
    added("ſt", special=False),
]


def split_sequence(regex):
    return {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}


def variants():
    """name -> tokenizer.json dict: the real files and the shapes of real models built from them."""
    out = {name: load(path) for name, path in REAL_FILES.items()}
    byte = load(BYTELEVEL)
    meta = load(METASPACE)
    bos = {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<|bos|>", "type_id": 0}},
                                                    {"Sequence": {"id": "A", "type_id": 0}}],
           "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
           "special_tokens": {"<|bos|>": {"id": "<|bos|>", "ids": [2], "tokens": ["<|bos|>"]}}}

    v = copy.deepcopy(byte)
    v["pre_tokenizer"] = split_sequence(LLAMA3_REGEX)
    v["post_processor"] = bos
    v["added_tokens"] += EXTRA_ADDED_TOKENS
    out["llama3_style"] = v

    v = copy.deepcopy(out["llama3_style"])  # truncation and padding, applied around the template
    v["truncation"] = {"direction": "Left", "max_length": 7, "strategy": "LongestFirst", "stride": 0}
    v["padding"] = {"strategy": {"Fixed": 9}, "direction": "Left", "pad_to_multiple_of": 4, "pad_id": 0,
                    "pad_type_id": 0, "pad_token": "<|pad|>"}
    out["llama3_truncation_padding"] = v

    v = copy.deepcopy(byte)
    v["normalizer"] = {"type": "NFC"}
    v["pre_tokenizer"] = split_sequence(QWEN2_REGEX)
    v["added_tokens"] += EXTRA_ADDED_TOKENS
    out["qwen2_style_nfc"] = v

    v = copy.deepcopy(byte)
    v["pre_tokenizer"]["add_prefix_space"] = True
    v["added_tokens"] += EXTRA_ADDED_TOKENS
    v["model"]["merges"] = [" ".join(m) for m in v["model"]["merges"]]  # the legacy "a b" form
    out["gpt2_prefix_space_added"] = v

    v = copy.deepcopy(byte)
    v["model"]["ignore_merges"] = True
    v["normalizer"] = {"type": "NFD"}
    out["bytelevel_ignore_merges_nfd"] = v

    v = copy.deepcopy(meta)
    v["normalizer"] = {"type": "Sequence", "normalizers": [
        {"type": "Prepend", "prepend": "▁"}, {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]}
    v["pre_tokenizer"] = None
    v["decoder"] = {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "ByteFallback"}, {"type": "Fuse"},
        {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
    v["added_tokens"] += EXTRA_ADDED_TOKENS
    out["llama2_style"] = v

    v = copy.deepcopy(meta)
    v["normalizer"] = {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}
    v["pre_tokenizer"] = None
    v["decoder"] = {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "ByteFallback"}, {"type": "Fuse"}]}
    v["added_tokens"] += EXTRA_ADDED_TOKENS
    out["gemma_style"] = v

    for scheme, split in (("always", True), ("never", True), ("first", False)):
        v = copy.deepcopy(meta)
        v["pre_tokenizer"] = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": scheme, "split": split}
        v["decoder"]["decoders"][0]["prepend_scheme"] = scheme
        v["added_tokens"] += EXTRA_ADDED_TOKENS
        out[f"metaspace_{scheme}_split_{split}"] = v

    # Where a piece starts decides Metaspace "first": a Strip normalizer moves the start, a prepended
    # text shares the first character's position.
    v = copy.deepcopy(meta)
    v["normalizer"] = {"type": "Strip", "strip_left": True, "strip_right": True}
    out["metaspace_strip"] = v
    v = copy.deepcopy(meta)
    v["normalizer"] = {"type": "Prepend", "prepend": "ab"}
    v["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"String": "b"}, "behavior": "Isolated", "invert": False},
        {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": True}]}
    v["added_tokens"] += EXTRA_ADDED_TOKENS
    out["metaspace_prepend_split"] = v

    for fuse in (True, False):  # no byte fallback: unknown characters become <unk>
        v = copy.deepcopy(meta)
        v["model"]["byte_fallback"] = False
        v["model"]["fuse_unk"] = fuse
        out[f"metaspace_unk_fuse_{fuse}"] = v

    for behavior, invert in (("Removed", True), ("MergedWithPrevious", False), ("MergedWithNext", False),
                             ("Contiguous", False), ("Isolated", True)):
        v = copy.deepcopy(byte)
        v["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"String": " "}, "behavior": behavior, "invert": invert},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}
        out[f"split_literal_{behavior}_invert_{invert}"] = v

    v = copy.deepcopy(byte)
    v["post_processor"] = {"type": "RobertaProcessing", "sep": ["<|eos|>", 1], "cls": ["<|bos|>", 2],
                           "trim_offsets": True, "add_prefix_space": False}
    out["roberta_processing"] = v

    v = copy.deepcopy(byte)
    v["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}
    out["digits_contiguous"] = v

    v = copy.deepcopy(byte)
    v["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": True},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}]}
    out["digits_bytelevel"] = v
    return out


def write(tmp_path, name, config):
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")
    return str(path)


# ---------------------------------------------------------------------------------------------
# Seeded random text

WORDS = ["the", "The", "capital", "of", "Quianeimtum", "is", "Gimfous", "word", "words", "cat", "hello", "naïve",
         "café", "résumé", "Ünïcödé", "straße", "ΑΘΗΝΑ", "москва", "日本語", "のテキスト", "한국어", "العربية", "हिन्दी",
         "ไทย", "עברית", "ab", "abab", "aaaaaaaa", "MixedCASE", "I", "don", "ſt", "ﬆ"]
SPECIALS = ["<bos>", "<eos>", "<pad>", "<unk>", "<|bos|>", "<|eos|>", "<|pad|>", "<|tool|>", "[MASK]", "<|x|>",
            "the cat", "<0x41>", "<0xE2>", "<0xZZ>", "▁", "Ġ", "Ċ", "word", "é", "e\u0301", "ab", "  "]
CONTRACTIONS = ["'s", "'S", "'t", "'T", "'re", "'RE", "'Re", "'ve", "'VE", "'m", "'M", "'ll", "'LL", "'lL", "'d",
                "'D", "'ſ", "'x", "n't", "''", "'"]
SPACES = [" ", "  ", "   ", "\t", "\n", "\r", "\r\n", "\n\n", " \n ", "\u00a0", "\u2009", "\u3000", "\u200b",
          "\u0085", "\x0b", "\x0c", "\x1c", "\u2028", "\u1680", "\u202f", " \t\n"]
EMOJI = ["🙂", "🚀", "👍🏽", "👨\u200d👩\u200d👧\u200d👦", "🏳️\u200d🌈", "🇫🇷", "❤️", "1️⃣", "🧑🏿\u200d🚀"]
MARKS = ["\u0301", "\u0300", "\u0323", "\u0327", "\u0308", "\u0345", "\u0334", "\u05b4", "\u0e49", "\u093c",
         "\u1dfa", "\u0f72", "\u0f71", "\u302a", "\u3099", "\u1161", "\u11a8"]
# Letters and numbers added in Unicode 15/16, and characters of Unicode 17 (unassigned for HF).
NEW_CHARS = ["\U00011F04", "\U0001E030", "\U00031350", "\U0002EBF0", "\U00010D4A", "\u1c89", "\U00010940",
             "\U000323B0", "\U0001E4D0", "\U00011938", "\U00011935\U00011930", "\U00016D68"]


def random_code_point(rng):
    while True:
        plane = rng.choice([0, 0, 0, 0, 1, 1, 2, 3, 14, 15])
        cp = plane * 0x10000 + rng.randrange(0x10000)
        if not 0xD800 <= cp <= 0xDFFF:
            return chr(cp)


def random_segment(rng):
    kind = rng.randrange(14)
    if kind == 0:
        return rng.choice(WORDS)
    if kind == 1:
        return rng.choice(SPECIALS)
    if kind == 2:
        return rng.choice(CONTRACTIONS)
    if kind == 3:
        return rng.choice(SPACES)
    if kind == 4:
        return "".join(rng.choice("0123456789") for _ in range(rng.randrange(1, 12))) + rng.choice(["", "٣", "²", "Ⅻ"])
    if kind == 5:
        return rng.choice(EMOJI)
    if kind == 6:  # a base and a random pile of combining marks, for canonical ordering
        return rng.choice("aeiouAEOnçkα가ᄀ") + "".join(rng.choice(MARKS) for _ in range(rng.randrange(1, 4)))
    if kind == 7:
        return "".join(chr(rng.randrange(0, 0x20)) for _ in range(rng.randrange(1, 3))) + rng.choice(["", "\x7f"])
    if kind == 8:
        return "".join(random_code_point(rng) for _ in range(rng.randrange(1, 4)))
    if kind == 9:
        return rng.choice(NEW_CHARS)
    if kind == 10:  # long words stress the merge loop
        return rng.choice(["a", "ab", "th", "é", "日", "x"]) * rng.randrange(50, 400)
    if kind == 11:
        return "".join(rng.choice("!\"#$%&()*+,-./:;<=>?@[\\]^_`{|}~…—«»¿¡") for _ in range(rng.randrange(1, 5)))
    if kind == 12:
        letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
        return "".join(rng.choice(letters) for _ in range(rng.randrange(1, 12)))
    return " " + rng.choice(WORDS)


def random_text(rng):
    return "".join(random_segment(rng) for _ in range(rng.randrange(0, 12)))


FIXED_TEXTS = ["", " ", "  ", "\n", "a", " a", "a ", "<bos>", "<|bos|>", " <|bos|> ", "<bos><bos>", "<|tool|>",
               "  <|tool|>  x", "[MASK]  y", "x<|x|>y", " <|x|> ", "wordword word", "a word.", "éé é", "the cat",
               "the  cat", "<0x41><0xE2>", "'s'S'ſ'll", "don't", "I'M", "1234567", "٣٣٣٣", "\r\n\r\n  \n x",
               "e\u0301\u0323", "\u1100\u1161\u11a8", "ab abab ab", "▁▁x", "  two  spaces", "ſt ſtſt"]


# ---------------------------------------------------------------------------------------------
# The comparison


class Tally:
    def __init__(self):
        self.compared = 0
        self.failures = []

    def check(self, what, got, want):
        self.compared += 1
        if got != want and len(self.failures) < 20:
            self.failures.append(f"{what}: graft {got!r} != HF {want!r}")
        elif got != want:
            self.failures.append("...")


def compare_tokenizer(name, path, rng, tally, n_strings):
    hf = HfTokenizer.from_file(path)
    ours = GraftTokenizer.from_file(path)
    tally.check(f"{name} vocab_size", ours.vocab_size, hf.get_vocab_size(with_added_tokens=True))
    texts = FIXED_TEXTS + [random_text(rng) for _ in range(n_strings)]
    for text in texts:
        want = hf.encode(text, add_special_tokens=False).ids
        got = ours.encode(text, add_special_tokens=False)
        tally.check(f"{name} encode({text!r})", got, want)
        for skip in (False, True):
            tally.check(f"{name} decode({want}, skip={skip})", ours.decode(want, skip),
                        hf.decode(want, skip_special_tokens=skip))
    for text in texts[:200]:
        tally.check(f"{name} encode({text!r}, True)", ours.encode(text, True),
                    hf.encode(text, add_special_tokens=True).ids)
    size = hf.get_vocab_size(with_added_tokens=True)
    for _ in range(RANDOM_ID_LISTS):  # arbitrary id sequences: split characters, stray byte tokens
        ids = [rng.randrange(size) for _ in range(rng.randrange(0, 12))]
        tally.check(f"{name} decode({ids})", ours.decode(ids, False), hf.decode(ids, skip_special_tokens=False))
    for token_id in range(size):
        tally.check(f"{name} id_to_token({token_id})", ours.id_to_token(token_id), hf.id_to_token(token_id))
    return len(texts)


def test_random_strings_agree_with_hf(tmp_path):
    rng = random.Random(20240611)
    tally = Tally()
    total = 0
    configs = variants()
    for name, config in configs.items():
        total += compare_tokenizer(name, write(tmp_path, name, config), rng, tally, STRINGS_PER_TOKENIZER)
    print(f"\n{len(configs)} tokenizers, {total} strings, {tally.compared} comparisons, "
          f"{tally.compared - len(tally.failures)} agree")
    assert not tally.failures, "\n".join(tally.failures)
    assert total >= 20000  # the test means something only with many strings


# ---------------------------------------------------------------------------------------------
# Every code point, with merges that expose the pre-tokenizer's splits


def all_pairs_tokenizer(pre_tokenizer, normalizer=None, added_tokens=()):
    """Byte-level BPE whose merges join any two bytes: two characters end up in different tokens
    exactly when the pre-tokenizer separated them, so the ids reveal every split."""
    from tokenizers.pre_tokenizers import ByteLevel
    alphabet = sorted(ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(alphabet)}
    merges = []
    for a in alphabet:
        for b in alphabet:
            vocab[a + b] = len(vocab)
            merges.append([a, b])
    return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": list(added_tokens),
            "normalizer": normalizer, "pre_tokenizer": pre_tokenizer, "post_processor": None,
            "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
            "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                      "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                      "vocab": vocab, "merges": merges}}


def sweep_code_points():
    return [c for c in list(range(0x40000)) + list(range(0xE0000, 0xE1000)) if not 0xD800 <= c <= 0xDFFF]


WHOLE_WORDS = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}


@pytest.mark.parametrize("name,pre_tokenizer,normalizer,added_tokens,context", [
    # letter / number / other / space contexts for each code point
    ("gpt2", {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}, None, [],
     "a{c}a\n1{c}1\n.{c}.\n {c}"),
    ("llama3", split_sequence(LLAMA3_REGEX), None, [], "a{c}a\n1{c}1\n.{c}.\n'{c}\n"),
    ("qwen2", split_sequence(QWEN2_REGEX), None, [], "a{c}a\n.{c}.\r{c}\n"),
    # canonical decomposition, ordering and composition of each code point
    ("nfc", WHOLE_WORDS, {"type": "NFC"}, [], "{c}\u0316\u0301 a{c}\u0345{c}\u0334 "),
    # Rust regex \w (single_word) and \s (lstrip / rstrip) around added tokens
    ("added", WHOLE_WORDS, None, [added("@", single_word=True), added("#", lstrip=True, rstrip=True)],
     "{c}@{c} x{c}#{c}x "),
])
def test_every_code_point_agrees_with_hf(tmp_path, name, pre_tokenizer, normalizer, added_tokens, context):
    path = write(tmp_path, name, all_pairs_tokenizer(pre_tokenizer, normalizer, added_tokens))
    hf = HfTokenizer.from_file(path)
    ours = GraftTokenizer.from_file(path)
    cps = sweep_code_points()
    failures = []
    bad_chunks = 0
    chunk = 4096
    for start in range(0, len(cps), chunk):
        text = "".join(context.format(c=chr(c)) for c in cps[start:start + chunk])
        if ours.encode(text) == hf.encode(text, add_special_tokens=False).ids:
            continue
        bad_chunks += 1
        if bad_chunks <= 2:  # name the code points of the first few chunks that differ
            for c in cps[start:start + chunk]:
                t = context.format(c=chr(c))
                if ours.encode(t) != hf.encode(t, add_special_tokens=False).ids:
                    failures.append(f"U+{c:04X}")
    assert bad_chunks == 0, f"{name}: {bad_chunks} chunks of {chunk} code points differ, first: {failures[:30]}"


def test_fixture_encodings_match():
    """The recorded HF outputs (ids, and decode with HF's default skip_special_tokens=True)."""
    for name in ("metaspace_bpe", "bytelevel_bpe"):
        ours = GraftTokenizer.from_file(str(REAL_FILES[name]))
        for case in load(DATA / "tokenizers" / name / "encodings.json"):
            assert ours.encode(case["text"]) == case["ids"], (name, case["text"])
            assert ours.decode(case["ids"], True) == case["decoded"], (name, case["text"])


def test_errors_are_value_errors(tmp_path):
    ours = GraftTokenizer.from_file(str(BYTELEVEL))
    with pytest.raises(ValueError, match="id 1400"):
        ours.decode([1400])
    with pytest.raises(ValueError, match="not found"):
        GraftTokenizer.from_file(str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text('{"model": {"type": "WordPiece"}}')
    with pytest.raises(ValueError, match='model.type "WordPiece" is not supported'):
        GraftTokenizer.from_file(str(bad))
