"""Writes models/facts_corpus.txt: every fact of tests/data/facts/facts.json in every template of its
relation, one sentence per line, as the fact models were trained (template(subject) + " " + object).
This is the corpus `graft stats` reads for the bundled model: the second moment of MLP keys over
the text the model knows, as ROME uses Wikipedia for real models."""

import json
from pathlib import Path

root = Path(__file__).resolve().parents[1]
facts = json.loads((root / "tests/data/facts/facts.json").read_text())
lines = []
for fact in facts["facts"]:
    for template in facts["templates"][fact["relation"]]:
        lines.append(template.replace("{}", fact["subject"]) + " " + fact["object"])
(root / "models/facts_corpus.txt").write_text("\n".join(lines) + "\n")
print(f"{len(lines)} sentences")
