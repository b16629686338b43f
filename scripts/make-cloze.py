#!/usr/bin/env python3
"""Write configs/eval-data/cloze/{en,zh}.jsonl: an in-domain cloze task built from the sample
corpora (configs/corpora), for the tiny sweep demo: each document's last sentence is the right
ending of the rest of it; three other documents' last sentences are the distractors.

The documents are in the training data, so this measures how well a tiny model has learnt
each language of its mixture (what an ALMR sweep trades off), at a scale where real
benchmarks are at chance. It is a stand-in for the paper's benchmarks, not a benchmark.

Format (the generic multiple-choice JSONL of `llm-eval`'s `cloze` task):
    {"context": "...", "choices": ["...", ...], "gold": 0}

Rerun from the repository root (standard library only): python3 scripts/make-cloze.py
"""
import json
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "configs", "eval-data", "cloze")


def split_en(doc):
    return [s for s in re.split(r"(?<=[.!?])\s+", doc.strip()) if s]


def split_zh(doc):
    return [s for s in re.findall(r"[^。！？]+[。！？]?[”’」]*", doc.strip()) if s.strip()]


def items(docs, split, delim):
    parts = [split(d) for d in docs]
    parts = [p for p in parts if len(p) >= 2]
    out = []
    for i, p in enumerate(parts):
        context = (" " if delim else "").join(p[:-1])
        endings = [p[-1]] + [parts[(i + k) % len(parts)][-1] for k in (1, 5, 11)]
        # The right ending's position cycles so that a position bias cannot score.
        gold = i % 4
        endings[0], endings[gold] = endings[gold], endings[0]
        out.append({"context": context, "choices": [delim + e for e in endings], "gold": gold})
    return out


def main():
    en = open(os.path.join(ROOT, "configs/corpora/en/wellbeing.txt"), encoding="utf-8").read()
    en_docs = [d for d in en.split("\n\n") if d.strip()]
    zh_docs = [json.loads(l)["text"] for l in
               open(os.path.join(ROOT, "configs/corpora/zh/wellbeing.jsonl"), encoding="utf-8")
               if l.strip()]
    os.makedirs(OUT, exist_ok=True)
    for name, docs, split, delim in [("en", en_docs, split_en, " "), ("zh", zh_docs, split_zh, "")]:
        rows = items(docs, split, delim)
        with open(os.path.join(OUT, f"{name}.jsonl"), "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        print(f"{name}: {len(rows)} items")


if __name__ == "__main__":
    main()
