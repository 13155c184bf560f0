"""Experiment 1: bytes vs a subword (BPE) tokenizer.

"You may try other tokenizers, I am interested in your findings!" We train byte-level BPE
tokenizers (the `tokenizers` library, trained here on the training split only) with
vocabularies of 512 and 2048, and the same diffusion model on their tokens: same body, same
steps, same batch and window *in tokens*, so the Transformer does the same work per step
(the embedding and output layers grow with the vocabulary; both parameter counts are
reported). Compared in **bits per byte**, the only unit fair across tokenizers: a
window's ELBO in bits divided by the bytes its tokens spell.

Infilling when the hole splits a word: a byte model masks exactly the missing bytes; a
BPE model can only mask whole tokens. We cut a hole of 3-6 bytes that starts inside a word;
the BPE model gets the text on each side tokenized separately (which is not how it saw the
same text in training) and as many masks as the hole's own tokenization has tokens (an
oracle count that favours it). Scored on exact holes, greedy decoding.

    pip install tokenizers      # (in the `dev` extra)
    python experiments/e1_tokenizers.py --jobs 2     # one seed, ~15 min on 2 cores
"""

import re
import time

import torch
from common import (
    corpus,
    mean_sd,
    parse_args,
    prefetch,
    recipe,
    train_run,
    val_bits,
    write_result,
)

from ddlm import infill
from ddlm.likelihood import chunks
from ddlm.sampling import SamplerConfig, denoise
from ddlm.tokenizer import MASK_ID, N_BYTES

VOCABS = (512, 2048)
SPECIALS = 3  # PAD, MASK, EOS sit at 256..258 in every vocabulary here


def train_bpe(text: bytes, vocab: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([text.decode("utf-8", "replace")], trainer=trainer)
    return tok


class BPE:
    """A trained BPE tokenizer with ids moved past ddlm's specials (256..258), so the model,
    the loss and the sampler use PAD and MASK unchanged."""

    def __init__(self, tok):
        self.tok = tok
        self.vocab = tok.get_vocab_size()
        # bytes each BPE id spells (the ByteLevel alphabet maps bytes to printable chars)
        inv = {c: b for b, c in _byte_to_unicode().items()}
        self.spelled = [bytes(inv[ch] for ch in tok.id_to_token(i)) for i in range(self.vocab)]

    def to_model(self, ids: list[int]) -> torch.Tensor:
        t = torch.tensor(ids, dtype=torch.long)
        return torch.where(t >= N_BYTES, t + SPECIALS, t)

    def to_bpe(self, ids: torch.Tensor) -> list[int]:
        ids = ids.long()
        return torch.where(ids >= N_BYTES + SPECIALS, ids - SPECIALS, ids).tolist()

    def encode(self, text: bytes) -> torch.Tensor:
        return self.to_model(self.tok.encode(text.decode("utf-8", "replace")).ids)

    def n_bytes(self, model_ids: torch.Tensor) -> int:
        return sum(len(self.spelled[i]) for i in self.to_bpe(model_ids))

    def cuts_a_token(self, text: bytes, a: int, b: int) -> bool:
        """Does the hole [a, b) start or end inside a token of the text's own tokenization?"""
        ends, pos = {0}, 0
        for i in self.to_bpe(self.encode(text)):
            pos += len(self.spelled[i])
            ends.add(pos)
        return a not in ends or b not in ends

    def decode(self, model_ids: torch.Tensor) -> bytes:
        return b"".join(self.spelled[i] for i in self.to_bpe(model_ids) if i < self.vocab)


def _byte_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table, which ByteLevel pre-tokenization uses."""
    keep = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def hole_items(val: bytes, n: int, seed: int = 0) -> list[dict]:
    """Holes of 3-6 bytes that start strictly inside a word of >= 6 letters."""
    gen = torch.Generator().manual_seed(seed)
    items, tries = [], 0
    while len(items) < n and tries < 50 * n:
        tries += 1
        start = int(torch.randint(0, len(val) - 128, (1,), generator=gen))
        text = val[start : start + 128]
        words = [m for m in re.finditer(rb"[A-Za-z]{6,}", text) if 40 <= m.start() < 80]
        if not words:
            continue
        m = words[0]
        a = m.start() + 2
        b = min(a + 3 + int(torch.randint(0, 4, (1,), generator=gen)), m.end())
        items.append({"text": text, "start": a, "end": b})
    return items


@torch.no_grad()
def bpe_infill(net, bpe: BPE, item: dict) -> bytes:
    text, a, b = item["text"], item["start"], item["end"]
    left, right = bpe.encode(text[:a]), bpe.encode(text[b:])
    k = len(bpe.encode(text[a:b]))  # oracle: the hole's own token count
    ids = torch.cat([left, torch.full((k,), MASK_ID), right])[None]
    fill = ids == MASK_ID
    g = denoise(net, ids, fill, SamplerConfig(steps=k, strategy="low_confidence"), seed=0)[0]
    return bpe.decode(g.ids[len(left) : len(left) + k])


def main() -> None:
    s = parse_args(__doc__, default_seeds=1)
    started = time.perf_counter()
    train, val = corpus(s.quick)
    train_bytes, val_bytes = bytes(train.tolist()), bytes(val.tolist())
    items = hole_items(val_bytes, 8 if s.quick else 150)
    seq_len = recipe(s)["seq_len"]
    # Every tokenizer first (seconds), so that all the training runs can go out at once.
    bpes = {}
    for vocab in VOCABS:
        t0 = time.perf_counter()
        bpe = BPE(train_bpe(train_bytes, vocab))
        tok_seconds = time.perf_counter() - t0
        train_ids, val_ids = bpe.encode(train_bytes), bpe.encode(val_bytes)
        ids = torch.cat([train_ids, val_ids])
        val_fraction = len(val_ids) / len(ids) + 1e-9  # the split falls on the same boundary
        bpes[f"bpe{vocab}"] = (bpe, tok_seconds, val_ids, ids, val_fraction)

    def task(name: str, seed: int) -> dict:
        if name == "bytes":
            return {"model": {}, "train": recipe(s, seed=seed)}
        bpe, _, _, ids, val_fraction = bpes[name]
        return {
            "model": {"vocab_size": bpe.vocab + SPECIALS},
            "train": recipe(s, seed=seed, val_fraction=val_fraction),
            "data": ids,
            "tag": name,
        }

    prefetch([task(name, seed) for name in ["bytes", *bpes] for seed in s.seeds], s)

    results = {"bytes": {"runs": []}}
    for seed in s.seeds:
        net, rec = train_run(settings=s, **task("bytes", seed))
        rec["val_bits"] = val_bits(net, val, s, seq_len=seq_len)
        hits = []
        for it in items:
            g = infill(
                net, it["text"], spans=[(it["start"], it["end"])], steps=it["end"] - it["start"]
            )
            hits.append(
                bytes(g.ids[it["start"] : it["end"]].tolist())
                == it["text"][it["start"] : it["end"]]
            )
        rec["hole_accuracy"] = sum(hits) / len(hits)
        results["bytes"]["runs"].append(rec)
    results["bytes"]["bytes_per_token"] = 1.0

    for name, (bpe, tok_seconds, val_ids, _, _) in bpes.items():
        split_hits = sum(bpe.cuts_a_token(it["text"], it["start"], it["end"]) for it in items)
        results[name] = {
            "vocab": bpe.vocab,
            "bytes_per_token": len(val_bytes) / len(val_ids),
            "tokenizer_train_seconds": round(tok_seconds, 1),
            "runs": [],
        }
        for seed in s.seeds:
            net, rec = train_run(settings=s, **task(name, seed))
            r = val_bits(net, val_ids, s, seq_len=seq_len)  # bits per *token*
            windows = chunks(val_ids, seq_len, 8 if s.quick else None)  # the ones scored
            n_bytes = sum(bpe.n_bytes(c) for c in windows)
            per_byte = r["bits_per_byte"] * windows.numel() / n_bytes
            rec["val_bits"] = {
                **r,
                "bits_per_token": r["bits_per_byte"],
                "bits_per_byte": per_byte,
                "stderr": r["stderr"] * windows.numel() / n_bytes,
                "n_bytes": n_bytes,
            }
            hits = [bpe_infill(net, bpe, it) == it["text"][it["start"] : it["end"]] for it in items]
            rec["hole_accuracy"] = sum(hits) / len(hits)
            results[name]["runs"].append(rec)
        results[name]["holes_inside_a_token"] = split_hits / len(items)

    summary = {}
    for name, res in results.items():
        rs = res["runs"]
        summary[name] = {
            "val_bits_per_byte": mean_sd([r["val_bits"]["bits_per_byte"] for r in rs]),
            "bytes_per_token": res["bytes_per_token"],
            "bytes_per_window": res["bytes_per_token"] * seq_len,
            "params": rs[0]["params"],
            "params_no_embedding": rs[0]["params_no_embedding"],
            "tokens_per_s": mean_sd([r["tokens_per_s"] for r in rs]),
            "bytes_per_s": mean_sd([r["tokens_per_s"] * res["bytes_per_token"] for r in rs]),
            "hole_accuracy": mean_sd([r["hole_accuracy"] for r in rs]),
        }
        row = summary[name]
        print(
            f"{name:8s} {row['val_bits_per_byte']['mean']:.3f} bits/byte, "
            f"{row['bytes_per_token']:.2f} bytes/token, {row['bytes_per_s']['mean']:.0f} bytes/s, "
            f"holes {row['hole_accuracy']['mean']:.2f}",
            flush=True,
        )
    write_result(
        "e1_tokenizers",
        s,
        started,
        {"results": results, "summary": summary, "n_holes": len(items)},
    )


if __name__ == "__main__":
    main()
