import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from ddlm.tokenizer import EOS_ID, MASK_GLYPH, MASK_ID, PAD_ID, VOCAB_SIZE, ByteTokenizer

tok = ByteTokenizer()


def test_bytes_are_their_own_ids():
    assert tok.encode("A").tolist() == [65]
    assert tok.encode("é").tolist() == [0xC3, 0xA9]
    assert tok.encode(b"\x00\xff").tolist() == [0, 255]
    assert tok.encode("").shape == (0,)
    assert tok.encode("hi").dtype == torch.long


def test_specials_are_above_the_bytes():
    assert {PAD_ID, MASK_ID, EOS_ID} == {256, 257, 258}
    assert tok.vocab_size == VOCAB_SIZE == 259


def test_decode_shows_mask_glyph_and_hides_pad_and_eos():
    ids = [104, MASK_ID, 105, PAD_ID, EOS_ID]
    assert tok.decode(ids) == "h" + MASK_GLYPH + "i"
    assert tok.decode_bytes(ids) == b"hi"


def test_decode_survives_a_mask_inside_a_multibyte_character():
    ids = tok.encode("€").tolist()  # 3 bytes
    broken = [ids[0], MASK_ID, ids[2]]
    text = tok.decode(broken)
    assert MASK_GLYPH in text and "\ufffd" in text


def test_out_of_vocabulary_id_is_named():
    with pytest.raises(ValueError, match="300"):
        tok.decode([65, 300])
    with pytest.raises(ValueError, match="-1"):
        tok.decode_bytes([-1])


def test_glyph_as_mask():
    ids = tok.encode("a" + MASK_GLYPH * 2 + "b", glyph_as_mask=True)
    assert ids.tolist() == [97, MASK_ID, MASK_ID, 98]
    assert tok.encode(MASK_GLYPH).tolist() == [0xE2, 0x96, 0x88]


def test_encode_batch_pads_and_masks():
    ids, mask = tok.encode_batch(["ab", "abcd"])
    assert ids.shape == mask.shape == (2, 4)
    assert ids[0].tolist() == [97, 98, PAD_ID, PAD_ID]
    assert mask.tolist() == [[True, True, False, False], [True] * 4]
    with pytest.raises(ValueError, match="pad_to"):
        tok.encode_batch(["abc"], pad_to=2)


def test_encode_rejects_other_types():
    with pytest.raises(TypeError):
        tok.encode(123)


@given(st.binary(max_size=200))
def test_every_byte_string_round_trips(data):
    assert tok.decode_bytes(tok.encode(data)) == data


@given(st.text(max_size=100))
def test_text_round_trips(text):
    assert tok.decode(tok.encode(text)) == text


@given(st.lists(st.integers(0, VOCAB_SIZE - 1), max_size=200))
def test_decode_never_raises_on_vocabulary_ids(ids):
    assert isinstance(tok.decode(ids), str)
