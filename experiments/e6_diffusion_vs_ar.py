"""Experiment 6: masked diffusion vs autoregressive, at equal parameters and compute.

Two questions. (1) The likelihood gap: validation bits per byte of a diffusion model (an
ELBO, an upper bound) against its causal twin (exact), same size, same steps, same bytes;
MDLM (arXiv 2406.07524) reports diffusion within about 9 % (in nats) of AR on OpenWebText
at 1 M+ steps. (2) A task where order matters: fill in a word given the text on *both*
sides. The diffusion model sees the right-hand context; the AR model can only continue the
left one. Items are words (4-10 letters) cut from the validation split; both models get the
word's length, decode greedily, and are scored on exact words and on bytes; each item's hit
is kept, for McNemar's exact test on the pairs.

The same infilling task is also run on the shipped `tiny` / `tiny-ar` checkpoints (larger,
trained on a GPU; not equal compute: the diffusion model had 3.4x the steps).

    python experiments/e6_diffusion_vs_ar.py --seeds 2     # ~10 min on one core
"""

import re
import time

import torch
from common import (
    corpus,
    mcnemar,
    mean_sd,
    parse_args,
    recipe,
    train_run,
    val_bits,
    write_result,
)

from ddlm import generate_ar, infill, load_pretrained
from ddlm.tokenizer import MASK_ID


def word_items(val: torch.Tensor, n: int, window: int = 128, seed: int = 0) -> list[dict]:
    """`n` items: a `window`-byte slice of the validation text with one word in its middle
    third to fill. Deterministic for a given seed."""
    gen = torch.Generator().manual_seed(seed)
    items, tries = [], 0
    while len(items) < n and tries < 50 * n:
        tries += 1
        start = int(torch.randint(0, len(val) - window, (1,), generator=gen))
        text = bytes(val[start : start + window].tolist())
        words = [
            m
            for m in re.finditer(rb"[A-Za-z]{4,10}", text)
            if window // 3 <= m.start() and m.end() <= 2 * window // 3
        ]
        if words:
            m = words[int(torch.randint(0, len(words), (1,), generator=gen))]
            items.append({"text": text, "start": m.start(), "end": m.end()})
    return items


@torch.no_grad()
def infill_scores(diffusion, ar, items: list[dict]) -> dict:
    """Exact-word and per-byte accuracy of both models on the items (greedy), each item's
    hit kept, and McNemar's exact test on the paired hits (diffusion first)."""
    hits = {"diffusion": [], "ar": []}
    bytes_ok = {"diffusion": [], "ar": []}
    examples = []
    for it in items:
        text, a, b = it["text"], it["start"], it["end"]
        truth = text[a:b]
        # the span is masked first; no no-repeat rule, since an exact fill may copy its context
        g = infill(diffusion, text, spans=[(a, b)], steps=b - a, no_repeat=0)
        d = bytes(g.ids[a:b].tolist())
        assert MASK_ID not in g.ids.tolist()
        r = generate_ar(ar, text[:a], b - a)
        c = bytes(r.ids[a:b].tolist())
        for name, guess in (("diffusion", d), ("ar", c)):
            hits[name].append(float(guess == truth))
            bytes_ok[name].append(sum(x == y for x, y in zip(guess, truth)) / len(truth))
        if len(examples) < 8:
            examples.append(
                {
                    "left": text[max(0, a - 40) : a].decode("utf-8", "replace"),
                    "truth": truth.decode(),
                    "right": text[b : b + 40].decode("utf-8", "replace"),
                    "diffusion": d.decode("utf-8", "replace"),
                    "ar": c.decode("utf-8", "replace"),
                }
            )
    out = {}
    for name in hits:
        n = len(hits[name])
        p = sum(hits[name]) / n
        out[name] = {
            "word_accuracy": p,
            "word_accuracy_se": (p * (1 - p) / n) ** 0.5,
            "byte_accuracy": sum(bytes_ok[name]) / n,
            "n_items": n,
            "hits": [bool(h) for h in hits[name]],
        }
    out["mcnemar"] = mcnemar(out["diffusion"]["hits"], out["ar"]["hits"])
    out["examples"] = examples
    return out


def main() -> None:
    s = parse_args(__doc__, default_seeds=2)
    started = time.perf_counter()
    _, val = corpus(s.quick)
    items = word_items(val, 8 if s.quick else 200)
    runs = {"diffusion": [], "ar": []}
    infills = []
    for seed in s.seeds:
        dnet, drec = train_run({}, recipe(s, seed=seed), s)
        anet, arec = train_run({"causal": True}, recipe(s, seed=seed), s)
        drec["val_bits"] = val_bits(dnet, val, s)
        arec["val_bits"] = val_bits(anet, val, s)
        runs["diffusion"].append(drec)
        runs["ar"].append(arec)
        infills.append(infill_scores(dnet, anet, items))
        print(
            f"seed {seed}: diffusion {drec['val_bits']['bits_per_byte']:.3f} "
            f"(ELBO) vs AR {arec['val_bits']['bits_per_byte']:.3f} bits/byte; words "
            f"{infills[-1]['diffusion']['word_accuracy']:.2f} vs {infills[-1]['ar']['word_accuracy']:.2f}",
            flush=True,
        )
    d = [r["val_bits"]["bits_per_byte"] for r in runs["diffusion"]]
    a = [r["val_bits"]["bits_per_byte"] for r in runs["ar"]]
    summary = {
        "diffusion_bits_per_byte": mean_sd(d),
        "ar_bits_per_byte": mean_sd(a),
        "gap_percent": mean_sd([100 * (x - y) / y for x, y in zip(d, a)]),
        "params": {"diffusion": runs["diffusion"][0]["params"], "ar": runs["ar"][0]["params"]},
        "infill_micro": {
            m: {k: mean_sd([f[m][k] for f in infills]) for k in ("word_accuracy", "byte_accuracy")}
            for m in ("diffusion", "ar")
        },
    }
    shipped = infill_scores(load_pretrained("tiny"), load_pretrained("tiny-ar"), items)
    print(
        f"gap {summary['gap_percent']['mean']:.1f} %; shipped words: diffusion "
        f"{shipped['diffusion']['word_accuracy']:.2f}, AR {shipped['ar']['word_accuracy']:.2f}"
        f" (McNemar: {shipped['mcnemar']})"
    )
    write_result(
        "e6_diffusion_vs_ar",
        s,
        started,
        {
            "runs": runs,
            "infill_micro": infills,
            "infill_shipped": shipped,
            "summary": summary,
        },
        shipped=("tiny", "tiny-ar"),
    )


if __name__ == "__main__":
    main()
