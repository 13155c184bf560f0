"""Print the card's three unedited samples (data/checkpoints/README.md) for the shipped models.

python data/checkpoints/samples.py
"""

import ddlm
from ddlm.data import load_corpus, split

OFFSETS = (49_700, 90_000, 150_000)

if __name__ == "__main__":
    _, val = split(load_corpus("pydoc"))
    tiny, tiny_ar = ddlm.load_pretrained("tiny"), ddlm.load_pretrained("tiny-ar")
    for i, offset in enumerate(OFFSETS, 1):
        prompt = bytes(val[offset : offset + 300].tolist()).decode("utf-8", errors="replace")
        d = ddlm.generate(tiny, prompt, 128, steps=64, block_length=32, seed=0)
        a = ddlm.generate_ar(tiny_ar, prompt, 128, seed=0)
        print(f"{i}. Offset {offset:,}, prompt ends `{'...' + prompt[-70:]!r}`")
        print(f"   - tiny: `{d.text!r}`")
        print(f"   - tiny-ar: `{a.text!r}`")
