"""Does the default sampler still read well after a long prompt? Three measures, per setting.

The no-repeat rule (`no_repeat`, a default since sitting 9) forbids every byte that would
complete a run already in the text, and after a long prompt real text repeats more of itself
(notebook 08 counts how often). This continues 12 prompts of 300 validation bytes (never trained
on, evenly spaced) by 128 bytes each and prints, per setting:

* known: the share of generated words (runs of 2+ ASCII letters) that occur in the training text,
* dist4: distinct byte 4-grams / all 4-grams of each continuation, averaged over prompts,
* judge: bits per byte the shipped AR twin gives the continuations (lower = more corpus-like,
  and lower for loops too, which is why it is read with the other two),
* max_ws: the largest share of whitespace in any one continuation.

    python bench/long_prompts.py                     # the shipped tiny, the settings below
    python bench/long_prompts.py --settings pmi@64 defaults@64
"""

import argparse
import re
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import ddlm  # noqa: E402
from ddlm.ar import continuation_bits_per_byte  # noqa: E402
from ddlm.data import load_corpus, split  # noqa: E402
from ddlm.quality import distinct_ngrams  # noqa: E402

WORD = re.compile(rb"[A-Za-z]{2,}")
# name -> generate() options; every row but "defaults*" names its gap and its rule.
SETTINGS = {
    "pmi@64": dict(steps=64, confidence="pmi", min_gap=0, no_repeat=0),
    "pmi,no_repeat12@64": dict(steps=64, confidence="pmi", min_gap=0, no_repeat=12),
    "defaults@64": dict(steps=64),
    "pmi": dict(confidence="pmi", min_gap=0, no_repeat=0),
    "defaults": dict(),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default="tiny", help="a shipped name or a model directory")
    p.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS)[:3])
    p.add_argument("--prompt-bytes", type=int, default=300)
    a = p.parse_args()
    train, val = split(load_corpus("pydoc"))
    vocabulary = set(WORD.findall(bytes(train.tolist())))
    model, judge = ddlm.load_pretrained(a.checkpoint), ddlm.load_pretrained("tiny-ar")
    offsets = [10_000 + i * 15_000 for i in range(12)]
    prompts = [
        bytes(val[o : o + a.prompt_bytes].tolist()).decode("utf-8", errors="replace")
        for o in offsets
    ]
    print(f"{a.checkpoint}: {len(prompts)} prompts of {a.prompt_bytes} bytes, 128 bytes each")
    for name in a.settings:
        gens = ddlm.generate(model, prompts, 128, seed=0, **SETTINGS[name])
        conts = [g.text.encode("utf-8", errors="replace") for g in gens]
        words = [w for c in conts for w in WORD.findall(c)]
        known = sum(w in vocabulary for w in words) / max(len(words), 1)
        dist4 = statistics.fmean(distinct_ngrams([c]) for c in conts)
        judged = statistics.fmean(
            continuation_bits_per_byte(judge, torch.tensor(list(q.encode())), torch.tensor(list(c)))
            for q, c in zip(prompts, conts)
        )
        max_ws = max(sum(c.count(w) for w in b" \n\t") / len(c) for c in conts)
        print(
            f"{name:22s} known {known:.3f} dist4 {dist4:.3f} judge {judged:.3f} "
            f"max_ws {max_ws:.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
