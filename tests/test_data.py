import hashlib
import http.server
import threading
from pathlib import Path

import pytest
import torch

from ddlm.data import (
    REMOTE_CORPORA,
    Batcher,
    RemoteCorpus,
    load_corpus,
    pydoc_topics_text,
    split,
    with_eos,
)
from ddlm.tokenizer import EOS_ID


def test_pydoc_topics_is_english_and_offline():
    data = load_corpus("pydoc-topics")
    assert data.dtype == torch.uint8 and len(data) > 100_000
    text = bytes(data[:20000].tolist()).decode("utf-8", errors="replace")
    assert " the " in text
    assert bytes(data.tolist()) == pydoc_topics_text()


def test_pydoc_default_is_cached(tmp_path):
    a = load_corpus("pydoc", cache_dir=tmp_path)
    cached = list(tmp_path.glob("pydoc-*.txt"))
    assert len(cached) == 1
    b = load_corpus("pydoc", cache_dir=tmp_path)
    assert torch.equal(a, b) and len(a) > len(load_corpus("pydoc-topics"))


def test_file_and_folder(tmp_path):
    (tmp_path / "a.txt").write_bytes(b"hello ")
    (tmp_path / "b.txt").write_bytes(b"world")
    assert bytes(load_corpus(tmp_path / "a.txt").tolist()) == b"hello "
    assert bytes(load_corpus(tmp_path).tolist()) == b"hello \nworld"


def _documents_of(ids: torch.Tensor) -> list[bytes]:
    """Split int16 ids at EOS: the documents (the last EOS ends the last one)."""
    assert ids.dtype == torch.int16 and int(ids[-1]) == EOS_ID
    ends = (ids == EOS_ID).nonzero().flatten().tolist()
    starts = [0] + [e + 1 for e in ends[:-1]]
    return [bytes(ids[s:e].tolist()) for s, e in zip(starts, ends)]


def test_eos_ends_every_document_and_replaces_the_separator(tmp_path):
    (tmp_path / "a.txt").write_bytes(b"hello ")
    (tmp_path / "b.txt").write_bytes(b"world")
    (tmp_path / "empty.txt").write_bytes(b"")
    assert _documents_of(load_corpus(tmp_path, eos=True)) == [b"hello ", b"world"]
    assert _documents_of(load_corpus(tmp_path / "a.txt", eos=True)) == [b"hello "]
    assert with_eos([b"ab", b"c"]).tolist() == [97, 98, EOS_ID, 99, EOS_ID]


def test_pydoc_documents_are_the_plain_corpus_cut_at_its_blank_lines(tmp_path):
    # One document per help() topic and per standard-library file; joined by the blank lines
    # they replace, they are byte for byte the plain corpus (which trained the shipped model).
    for name in ("pydoc-topics", "pydoc"):
        docs = _documents_of(load_corpus(name, cache_dir=tmp_path, eos=True))
        plain = bytes(load_corpus(name, cache_dir=tmp_path).tolist())
        assert b"\n\n".join(docs) + b"\n" == plain
        assert len(docs) > (50 if name == "pydoc-topics" else 300)
    # The cached text is reused with its document lengths (a second load reads, not rebuilds).
    assert len(list(tmp_path.glob("pydoc-*.documents.json"))) == 1
    assert _documents_of(load_corpus("pydoc", cache_dir=tmp_path, eos=True)) == docs


def test_large_file_is_memory_mapped(tmp_path, monkeypatch):
    import ddlm.data as d

    monkeypatch.setattr(d, "MEMMAP_THRESHOLD", 10)
    (tmp_path / "big.bin").write_bytes(bytes(range(256)) * 4)
    data = load_corpus(tmp_path / "big.bin")
    assert len(data) == 1024 and int(data[300]) == 300 % 256
    batch = next(Batcher(data, 16, 2))
    assert batch.shape == (2, 16)


def test_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        load_corpus(tmp_path / "nope")
    (tmp_path / "empty.txt").write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        load_corpus(tmp_path / "empty.txt")
    (tmp_path / "dir").mkdir()
    with pytest.raises(ValueError, match="no files"):
        load_corpus(tmp_path / "dir")
    with pytest.raises(ValueError, match="shorter than one training sequence"):
        Batcher(torch.zeros(10, dtype=torch.uint8), seq_len=64, batch_size=2)


def test_split_is_the_tail():
    data = torch.arange(100, dtype=torch.uint8)
    train, val = split(data, 0.1)
    assert len(val) == 10 and int(val[0]) == 90 and len(train) == 90
    with pytest.raises(ValueError):
        split(data, 0.0)


def test_batcher_is_reproducible_and_resumable():
    data = torch.randint(0, 256, (5000,), dtype=torch.uint8)
    a = Batcher(data, 32, 4, seed=3)
    first = next(a)
    state = a.state()
    second = next(a)
    b = Batcher(data, 32, 4, seed=99)
    b.set_state(state)
    assert torch.equal(next(b), second)
    assert first.dtype == torch.long and first.shape == (4, 32)
    # Every crop is a contiguous slice of the corpus.
    row = first[0]
    starts = [i for i in range(len(data) - 31) if int(data[i]) == int(row[0])]
    assert any(torch.equal(data[s : s + 32].long(), row) for s in starts)


class _Server:
    def __init__(self, root: Path):
        handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(root), **k)  # noqa: E731
        http.server.SimpleHTTPRequestHandler.log_message = lambda *a: None
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def fake_remote(monkeypatch, tmp_path):
    payload = b"To be, or not to be, that is the question.\n" * 50
    (tmp_path / "srv").mkdir()
    (tmp_path / "srv" / "input.txt").write_bytes(payload)
    spec = RemoteCorpus("unused", hashlib.sha256(payload).hexdigest(), "shake.txt", len(payload))
    monkeypatch.setitem(REMOTE_CORPORA, "tinyshakespeare", spec)
    return tmp_path, payload


def test_download_verified_and_cached(fake_remote):
    tmp_path, payload = fake_remote
    cache = tmp_path / "cache"
    with _Server(tmp_path / "srv") as url:
        data = load_corpus("tinyshakespeare", cache_dir=cache, url=f"{url}/input.txt")
    assert bytes(data.tolist()) == payload
    assert (cache / "shake.txt").read_bytes() == payload
    # Second time: offline is fine, the cache is used.
    again = load_corpus("tinyshakespeare", cache_dir=cache, url="http://127.0.0.1:9/none")
    assert torch.equal(data, again)


def test_checksum_mismatch_is_not_kept(fake_remote):
    tmp_path, _ = fake_remote
    (tmp_path / "srv" / "input.txt").write_bytes(b"tampered content")
    cache = tmp_path / "cache"
    with _Server(tmp_path / "srv") as url:
        with pytest.raises(ValueError, match="checksum mismatch"):
            load_corpus("tinyshakespeare", cache_dir=cache, url=f"{url}/input.txt")
    assert not (cache / "shake.txt").exists()
    assert not [p for p in cache.iterdir() if p.is_file()]


def test_offline_error_says_where_to_put_the_file(fake_remote):
    tmp_path, _ = fake_remote
    with _Server(tmp_path / "srv") as url:
        missing = f"{url}/missing.txt"
        with pytest.raises(ConnectionError, match="shake.txt"):
            load_corpus("tinyshakespeare", cache_dir=tmp_path / "cache", url=missing)


def test_real_tinyshakespeare_spec():
    spec = REMOTE_CORPORA["tinyshakespeare"]
    assert spec.size == 1_115_394 and len(spec.sha256) == 64
