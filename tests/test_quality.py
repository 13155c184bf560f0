import pytest

from ddlm.quality import distinct_ngrams


def test_distinct_ngrams_by_hand():
    assert distinct_ngrams([b"abcdef"], 4) == 1.0  # abcd bcde cdef
    assert distinct_ngrams([b" " * 10], 4) == 1 / 7  # one 4-gram, seven times
    assert distinct_ngrams([b"abab", b"abab"], 2) == 2 / 6  # ab, ba pooled over samples
    assert distinct_ngrams([b"abc"], 4) == 0.0  # too short: no n-grams
    with pytest.raises(ValueError, match="n must be"):
        distinct_ngrams([b"abc"], 0)
