"""Do short prompts collapse? Three measures of samples after short prompts, per sampler setting.

A small diffusion model asked to continue a 20-40 byte prompt may fill its canvas with spaces
(greedy low-confidence decoding reveals the most predictable bytes first, and in a weak model
those are spaces), or loop ("the parser of the parser"). For each sampler setting, the model
continues 13 prompts by 128 bytes: "The assert statement" and 12 prompts cut at word
boundaries from the validation split (never trained on). For each setting it prints

* ws>35%: how many of the 13 continuations are more than 35 % whitespace (collapse),
* known: the share of generated words (runs of 2+ ASCII letters) that occur in the corpus,
* dist4: distinct byte 4-grams / all 4-grams of each continuation, averaged over prompts,
* judge: bits per byte the shipped AR twin gives the continuations (lower = more corpus-like;
  it also rewards runs of spaces, which is why it is read with the other three),
* s/prompt: wall time per prompt (all 13 decoded in one batch),
* ended: with stop_at_eos, how many continuations the model ended with EOS before 128 bytes
  (the measures above are taken on the text before the EOS).

The targets of issue 13: 0 of 13 over 35 % whitespace, known >= 0.92, dist4 >= 0.65. The
default sampler, chosen by this bench, is PMI ranking (`confidence="pmi"`, since 2026-12-01), no
12-byte run repeated (`no_repeat=12`, since 2026-12-02), one step's reveals kept 12 apart and a
soft left-to-right order (`min_gap=12`, `order_bias=0.02`, since 2026-12-06), chosen on both
prompt sets (`--held-out` selects the second, which is therefore not a held-out test); the
`probability` rows are LLaDA's ranking, the default before PMI. Every row but `defaults*` runs
without the gap, the rule and the order unless its name says otherwise (PINNED).

    python bench/short_prompts.py                        # the shipped tiny, the settings below
    python bench/short_prompts.py --checkpoint runs/x --json bench/short_prompts.json
    python bench/short_prompts.py --seeds 3 --settings "pmi,T1,top_p0.5"   # a sampled setting

With --seeds N every prompt is decoded N times (seeds 0..N-1) and the measures are pooled:
ws>35% then counts over N x 13 continuations.
"""

import argparse
import dataclasses
import json
import platform
import re
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ddlm import SamplerConfig, generate, load_pretrained  # noqa: E402
from ddlm.data import load_corpus, split  # noqa: E402
from ddlm.files import sha256_file  # noqa: E402
from ddlm.model import WEIGHTS_NAME, resolve_checkpoint  # noqa: E402
from ddlm.provenance import code_provenance  # noqa: E402
from ddlm.quality import continuation_bits_per_byte, distinct_ngrams  # noqa: E402

WORD = re.compile(rb"[A-Za-z]{2,}")

# name -> SamplerConfig fields. "defaults@64" is `generate`'s defaults with the README's
# --steps 64 (two bytes per step); "defaults" is the full defaults (one byte per step). Every
# other row names its ranking ("probability" is LLaDA's, the default before PMI), so that a
# change of the defaults cannot change what a row means.
P = dict(confidence="probability")
SETTINGS = {
    "defaults@64": dict(steps=64),
    "defaults": dict(),
    "probability@64": dict(steps=64, **P),
    "probability": dict(**P),
    "blocks32@64": dict(steps=64, block_length=32, **P),
    "blocks16@64": dict(steps=64, block_length=16, **P),
    "blocks8@64": dict(steps=64, block_length=8, **P),
    "margin@64": dict(steps=64, confidence="margin"),
    "margin": dict(confidence="margin"),
    "margin,T0.5,blocks32@64": dict(
        steps=64, confidence="margin", temperature=0.5, block_length=32
    ),
    "entropy@64": dict(steps=64, confidence="entropy"),
    "margin,blocks32@64": dict(steps=64, confidence="margin", block_length=32),
    "T0.8,blocks32@64": dict(steps=64, temperature=0.8, block_length=32, **P),
    "random,T0.8@64": dict(steps=64, strategy="random", temperature=0.8),
    "random@64 (original's)": dict(steps=64, strategy="random"),
    "guidance1@64": dict(steps=64, guidance=1.0, **P),
    "margin,guidance1@64": dict(steps=64, confidence="margin", guidance=1.0),
    # For a model trained with EOS (--eos true): it may end the text (at least 32 bytes).
    "eos@64": dict(steps=64, stop_at_eos=True, min_length=32, **P),
    "margin,eos@64": dict(steps=64, confidence="margin", stop_at_eos=True, min_length=32),
    "pmi,eos@64": dict(steps=64, confidence="pmi", stop_at_eos=True, min_length=32),
    # Nucleus sampling (top_p) with confidence ranking of the sampled byte, and a soft
    # left-to-right order (order_bias).
    "T0.8,top_p0.9@64": dict(steps=64, temperature=0.8, top_p=0.9, **P),
    "margin,T0.8,top_p0.9@64": dict(steps=64, confidence="margin", temperature=0.8, top_p=0.9),
    "order_bias0.02@64": dict(steps=64, order_bias=0.02, **P),
    "order_bias0.02,T0.7,top_p0.9@64": dict(
        steps=64, order_bias=0.02, temperature=0.7, top_p=0.9, **P
    ),
    "margin,guidance1": dict(confidence="margin", guidance=1.0),
    "margin,guidance2@64": dict(steps=64, confidence="margin", guidance=2.0),
    "blocks64@64": dict(steps=64, block_length=64, **P),
    # Ranking by what the context adds (PMI, the default since 2026-12-01).
    "pmi@64": dict(steps=64, confidence="pmi"),
    "pmi": dict(confidence="pmi"),
    "pmi,blocks32@64": dict(steps=64, confidence="pmi", block_length=32),
    "pmi,guidance1@64": dict(steps=64, confidence="pmi", guidance=1.0),
    # ReMDM-style revision: one earlier reveal sent back to MASK per step.
    "remask1@64": dict(steps=64, remask=1, **P),
    "margin,remask1@64": dict(steps=64, confidence="margin", remask=1),
    "margin,guidance1,remask1@64": dict(steps=64, confidence="margin", guidance=1.0, remask=1),
    # PMI ranking of a sampled byte (seeded, so still repeatable): does sampling break the
    # loops of greedy decoding without inventing words? And at two bytes per step, does a
    # threshold (reveal every byte at least 90 % likely as well, so that the uncertain ones
    # get more steps) keep parallel reveals from inventing words?
    "pmi,T0.5,top_p0.8": dict(confidence="pmi", temperature=0.5, top_p=0.8),
    "pmi,T1,top_p0.6": dict(confidence="pmi", temperature=1.0, top_p=0.6),
    "pmi,threshold0.9@64": dict(steps=64, confidence="pmi", threshold=0.9),
    "pmi,T0.5,top_p0.8,threshold0.9@64": dict(
        steps=64, confidence="pmi", temperature=0.5, top_p=0.8, threshold=0.9
    ),
    "pmi,T1,top_p0.5": dict(confidence="pmi", temperature=1.0, top_p=0.5),
    "pmi,T1,top_p0.5@64": dict(steps=64, confidence="pmi", temperature=1.0, top_p=0.5),
    # Reveals of one step kept apart (min_gap): neighbours revealed together are drawn
    # independently, the source of invented words at two bytes per step.
    "pmi,min_gap1@64": dict(steps=64, confidence="pmi", min_gap=1),
    "pmi,min_gap2@64": dict(steps=64, confidence="pmi", min_gap=2),
    "probability,min_gap2@64": dict(steps=64, min_gap=2, **P),
    "pmi,min_gap2,T0.5,top_p0.8@64": dict(
        steps=64, confidence="pmi", min_gap=2, temperature=0.5, top_p=0.8
    ),
    "pmi,min_gap2,T1,top_p0.5@64": dict(
        steps=64, confidence="pmi", min_gap=2, temperature=1.0, top_p=0.5
    ),
    # One config for both step counts: a narrower nucleus, near-greedy where the model is sure
    # (what a gap needs at two bytes per step), sampled where it is not (what breaks loops at
    # one byte per step).
    "pmi,min_gap2,T1,top_p0.3@64": dict(
        steps=64, confidence="pmi", min_gap=2, temperature=1.0, top_p=0.3
    ),
    "pmi,min_gap2,T1,top_p0.3": dict(confidence="pmi", min_gap=2, temperature=1.0, top_p=0.3),
    "pmi,min_gap2,T1,top_p0.4@64": dict(
        steps=64, confidence="pmi", min_gap=2, temperature=1.0, top_p=0.4
    ),
    "pmi,min_gap2,T1,top_p0.4": dict(confidence="pmi", min_gap=2, temperature=1.0, top_p=0.4),
    # No-repeat runs (no_repeat): greedy decoding, with the byte that would complete a copy of
    # n bytes banned where it would be revealed. Does it break loops (and runs of spaces)
    # without the invented words that sampling brings?
    "pmi,no_repeat8": dict(confidence="pmi", no_repeat=8),
    "pmi,no_repeat12": dict(confidence="pmi", no_repeat=12),
    "pmi,no_repeat16": dict(confidence="pmi", no_repeat=16),
    "pmi,no_repeat8@64": dict(steps=64, confidence="pmi", no_repeat=8),
    "pmi,no_repeat12@64": dict(steps=64, confidence="pmi", no_repeat=12),
    "pmi,min_gap2,no_repeat8@64": dict(steps=64, confidence="pmi", min_gap=2, no_repeat=8),
    "pmi,min_gap2,no_repeat12@64": dict(steps=64, confidence="pmi", min_gap=2, no_repeat=12),
    "pmi,min_gap2,no_repeat16@64": dict(steps=64, confidence="pmi", min_gap=2, no_repeat=16),
}
# Wider gaps and a soft left-to-right order (2026-12-06). At two bytes per step the gap of 2 left
# one prompt collapsed and a seventh of the words invented: are two bytes guessed together
# better kept a word apart, and revealed roughly in reading order?
_NR = dict(confidence="pmi", no_repeat=12)
for _gap in (4, 8, 12, 16):
    SETTINGS[f"pmi,min_gap{_gap},no_repeat12@64"] = dict(steps=64, min_gap=_gap, **_NR)
for _gap, _bias in ((2, 0.02), (8, 0.02), (12, 0.01), (12, 0.02), (12, 0.03), (16, 0.02)):
    SETTINGS[f"pmi,min_gap{_gap},no_repeat12,order_bias{_bias}@64"] = dict(
        steps=64, min_gap=_gap, order_bias=_bias, **_NR
    )
for _bias in (0.01, 0.02, 0.03):  # one byte per step: only the order acts (no gap to keep)
    SETTINGS[f"pmi,no_repeat12,order_bias{_bias}"] = dict(order_bias=_bias, **_NR)
SETTINGS["pmi,min_gap2,no_repeat12@32"] = dict(steps=32, min_gap=2, **_NR)  # 4 bytes per step
SETTINGS["pmi,min_gap12,no_repeat12,order_bias0.02@32"] = dict(
    steps=32, min_gap=12, order_bias=0.02, **_NR
)


# Every row but "defaults*" pins these to what every row ran with before they had defaults of
# their own (2026-12-02 made min_gap=2, no_repeat=12 the defaults; 2026-12-06 min_gap=12,
# order_bias=0.02), so that a row keeps its meaning, and its committed results, whatever the
# defaults become.
PINNED = dict(min_gap=0, no_repeat=0, order_bias=0.0)


def config_for(name: str) -> SamplerConfig:
    """The SamplerConfig a setting's name stands for."""
    fields = SETTINGS[name]
    return SamplerConfig(**(fields if name.startswith("defaults") else {**PINNED, **fields}))


def short_prompts(
    val: bytes, n: int = 12, lo: int = 20, hi: int = 40, held_out: bool = False
) -> list[str]:
    """n prompts of lo..hi bytes, evenly spaced over the validation text, each starting at the
    beginning of a line and cut at the last space before `hi` bytes (ASCII letters first).
    `held_out=True` picks n other lines, halfway between those: the second set. It was meant to
    check that a sampler chosen on the first is not fitted to it; the default sampler was then
    chosen looking at both, so it is a second set used for that choice, not a held-out test."""
    starts = [m.end() for m in re.finditer(rb"\n(?=[A-Z][a-z])", val)]
    shift = len(starts) // (2 * n) + 3 if held_out else 0
    picked = [starts[i * len(starts) // n + shift] for i in range(n)]
    prompts = []
    for s in picked:
        chunk = val[s : s + hi]
        cut = chunk.rfind(b" ", lo, hi)
        text = chunk[: cut if cut >= lo else hi]
        prompts.append(text.decode("ascii", errors="replace"))
    return prompts


def measure(gens, prompts, vocabulary: set, judge) -> dict:
    # A continuation is the generated bytes up to an EOS the model chose (stop_at_eos).
    conts = [g.text.encode("utf-8", errors="replace") for g in gens]
    ws = [sum(c.count(w) for w in b" \n\t") / max(len(c), 1) for c in conts]
    words = [w for c in conts for w in WORD.findall(c)]
    judged = [
        continuation_bits_per_byte(judge, torch.tensor(list(p.encode())), torch.tensor(list(c)))
        for p, c in zip(prompts, conts)
        if c
    ]
    return {
        "ended_early": sum(len(c) < len(g.ids[g.fill]) for c, g in zip(conts, gens)),
        "mean_bytes": statistics.fmean(len(c) for c in conts),
        "over_35pct_ws": sum(x > 0.35 for x in ws),
        "max_ws": max(ws),
        "known_words": sum(w in vocabulary for w in words) / max(len(words), 1),
        "n_words": len(words),
        # An empty or 1-3 byte continuation has no 4-grams: it scores 0, not a free 1.
        "distinct4": statistics.fmean(distinct_ngrams([c]) if len(c) >= 4 else 0.0 for c in conts),
        "judge_bits": statistics.fmean(judged) if judged else float("nan"),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default="tiny", help="a shipped name or a model directory")
    p.add_argument("--length", type=int, default=128)
    p.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    p.add_argument("--show", type=int, default=3, help="print this many samples per setting")
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument(
        "--seeds",
        type=int,
        default=1,
        help="decode every prompt with seeds 0..N-1 and pool the measures (a sampled setting "
        "differs from seed to seed; greedy ones do not)",
    )
    p.add_argument(
        "--held-out",
        action="store_true",
        help="the second set: 12 other prompts, between the usual ones (no 'The assert statement'); "
        "the default sampler was chosen on both sets",
    )
    a = p.parse_args()
    corpus = load_corpus("pydoc")
    _, val = split(corpus)
    if a.held_out:
        prompts = short_prompts(val.numpy().tobytes(), held_out=True)
    else:
        prompts = ["The assert statement", *short_prompts(val.numpy().tobytes())]
    vocabulary = set(WORD.findall(corpus.numpy().tobytes()))
    model, judge = load_pretrained(a.checkpoint), load_pretrained("tiny-ar")
    seeds = "seed 0" if a.seeds == 1 else f"seeds 0-{a.seeds - 1}, pooled"
    print(f"{a.checkpoint}: {len(prompts)} prompts, {a.length} bytes each, {seeds}")
    print(
        f"{'setting':24} {'ws>35%':>7} {'known':>6} {'dist4':>6} {'judge':>6} {'s/prompt':>8} "
        f"{'ended':>6}"
    )
    rows = {}
    for name in a.settings:
        config = config_for(name)
        t0 = time.perf_counter()
        gens = [
            g
            for seed in range(a.seeds)
            for g in generate(model, prompts, a.length, config, seed=seed)
        ]
        wall = (time.perf_counter() - t0) / len(gens)
        n = len(gens)
        r = {**measure(gens, prompts * a.seeds, vocabulary, judge), "s_per_prompt": wall}
        r["samples"] = {pr: g.text for pr, g in zip(prompts, gens)}  # seed 0's
        rows[name] = r
        print(
            f"{name:24} {r['over_35pct_ws']:>4}/{n} {r['known_words']:>6.3f} "
            f"{r['distinct4']:>6.3f} {r['judge_bits']:>6.3f} {wall:>8.2f} "
            f"{r['ended_early']:>3}/{n}"
        )
        for pr, g in list(zip(prompts, gens))[: a.show]:
            print(f"    {pr!r} -> {g.text[:100]!r}")
    if a.json:
        out = {
            "command": "python " + shlex.join(sys.argv),
            "checkpoint": a.checkpoint,
            "provenance": code_provenance(),  # the revision and the package code measured
            # Which weights were measured, so a result left over from older weights is caught.
            "weights_sha256": sha256_file(resolve_checkpoint(a.checkpoint) / WEIGHTS_NAME),
            "judge_weights_sha256": sha256_file(resolve_checkpoint("tiny-ar") / WEIGHTS_NAME),
            "seeds": a.seeds,
            "prompts": prompts,
            "machine": {
                "cpu": platform.processor() or platform.machine(),
                "torch": torch.__version__,
            },
            "date": time.strftime("%Y-%m-%d"),
            "settings": {k: SETTINGS[k] for k in a.settings},
            "pinned": PINNED,  # under every setting but "defaults*"
            "defaults": dataclasses.asdict(SamplerConfig()),
            "results": rows,
        }
        Path(a.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
