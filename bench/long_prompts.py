"""Does the default sampler still read well after a long prompt? Three measures, per setting.

The no-repeat rule (`no_repeat`, a default since sitting 9) forbids every byte that would
complete a run already in the text, and after a long prompt real text repeats more of itself
(notebook 09 counts how often). This continues 12 prompts of 300 validation bytes (never trained
on, evenly spaced) by 128 bytes each and prints, per setting:

* known: the share of generated words (runs of 2+ ASCII letters) that occur in the training text,
* dist4: distinct byte 4-grams / all 4-grams of each continuation, averaged over prompts,
* judge: bits per byte the shipped AR twin gives the continuations (lower = more corpus-like,
  and lower for loops too, which is why it is read with the other two),
* max_ws: the largest share of whitespace in any one continuation.

    python bench/long_prompts.py                     # the shipped tiny, the settings below
    python bench/long_prompts.py --settings pmi defaults     # any row of short_prompts.py
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from short_prompts import SETTINGS, WORD, config_for, measure  # noqa: E402

import ddlm  # noqa: E402
from ddlm.data import load_corpus, split  # noqa: E402

# Rows of bench/short_prompts.py (the same names, pinned the same way).
DEFAULT_SETTINGS = ["pmi@64", "pmi,no_repeat12@64", "pmi,min_gap2,no_repeat12@64", "defaults@64"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default="tiny", help="a shipped name or a model directory")
    p.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=DEFAULT_SETTINGS)
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
        r = measure(
            ddlm.generate(model, prompts, 128, config_for(name), seed=0), prompts, vocabulary, judge
        )
        print(
            f"{name:22s} known {r['known_words']:.3f} dist4 {r['distinct4']:.3f} "
            f"judge {r['judge_bits']:.3f} max_ws {r['max_ws']:.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
