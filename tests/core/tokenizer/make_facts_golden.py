#!/usr/bin/env python3
"""Write facts_golden.json: what HF `tokenizers` makes of the facts corpus, for test_tokenizer.cpp.

For each facts model's tokenizer.json, the ids (add_special_tokens=False) of fact sentences and of
the edit requests' prompts with their targets, as the knowledge-editing code will tokenize them.
Run from the repository root:  python3 tests/core/tokenizer/make_facts_golden.py
"""

import json
from pathlib import Path

from tokenizers import Tokenizer

ROOT = Path(__file__).resolve().parents[3]
FACTS = ROOT / "tests" / "data" / "facts"
MODEL_DIRS = {
    "llama_facts": "tests/data/facts/llama_facts",
    "gpt2_facts": "tests/data/facts/gpt2_facts",
    "gemma4_facts": "models/gemma4_facts",
}


def corpus():
    facts = json.loads((FACTS / "facts.json").read_text(encoding="utf-8"))
    requests = json.loads((FACTS / "requests.json").read_text(encoding="utf-8"))
    texts = []
    for i, fact in enumerate(facts["facts"]):
        template = facts["templates"][fact["relation"]][i % 5]
        if i % 4 == 0:
            texts.append(template.format(fact["subject"]) + " " + fact["object"])
    for request in requests[:30]:
        prompt = request["prompt"].format(request["subject"])
        texts += [prompt, prompt + request["target_true"], prompt + request["target_new"]]
        texts += [p + request["target_new"] for p in request["paraphrase_prompts"]]
        texts += [n["prompt"] + n["target"] for n in request["neighborhood_prompts"][:3]]
    return texts


def main():
    texts = corpus()
    golden = {"texts": texts, "ids": {}}
    for name, directory in MODEL_DIRS.items():
        tok = Tokenizer.from_file(str(ROOT / directory / "tokenizer.json"))
        golden["ids"][name] = [tok.encode(t, add_special_tokens=False).ids for t in texts]
    out = Path(__file__).with_name("facts_golden.json")
    out.write_text(json.dumps(golden, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")
    print(f"wrote {out}: {len(texts)} texts x {len(MODEL_DIRS)} tokenizers")


if __name__ == "__main__":
    main()
