"""The plait-gemma command: train on a (fake, offline) corpus, resume, sample, info."""

import json

import pytest
from plait.examples.gemma import ConfigError
from plait.examples.gemma.__main__ import _split_overrides, main

MICRO = [
    "--config.tokenizer=byte", "--config.model.vocab_size=264", "--config.model.num_layers=2",
    "--config.model.embed_dim=32", "--config.model.hidden_dim=64", "--config.model.head_dim=8",
    "--config.model.sliding_window", "8", "--config.seq_len=16", "--config.batch_size=8",
    "--config.num_steps=2", "--config.eval_every=2", "--config.eval_batches=1", "--config.log_every=1",
    "--config.sample_tokens=4", "--config.mesh_data=1",
]


@pytest.fixture
def fake_corpus(tmp_path, monkeypatch, texts):
    corpus = tmp_path / "data" / "shakespeare"
    corpus.mkdir(parents=True)
    for i, text in enumerate(texts):
        (corpus / f"play{i}_gut.txt").write_text(text)
    monkeypatch.setenv("PLAIT_DATA_DIR", str(tmp_path / "data"))


def test_train_then_sample(fake_corpus, tmp_path, capsys, monkeypatch):
    import jax

    # One device: the forced 8-device CPU would otherwise make the default mesh 8-way.
    monkeypatch.setattr(jax, "devices", lambda *a: jax.local_devices()[:1])
    workdir = tmp_path / "run"
    assert main(["train", "--config", "tiny", *MICRO, "--workdir", str(workdir), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "validation loss" in out and "sample:" in out
    saved = json.loads((workdir / "config.json").read_text())
    assert saved["model"]["num_layers"] == 2 and saved["model"]["sliding_window"] == 8
    assert {"summary", "history"} <= set(json.loads((workdir / "metrics.json").read_text()))
    assert (workdir / "loss.png").exists() and (workdir / "samples.txt").exists()

    # The same settings as the sample written at the end of training: the same text.
    args = ["--max-new-tokens", "4", "--temperature", "0.8", "--top-k", "40", "--seed", "0"]
    assert main(["sample", "--checkpoint", str(workdir), "--prompt", "ROMEO:\\n", *args]) == 0
    assert capsys.readouterr().out.split("\n", 1)[1].strip() == (workdir / "samples.txt").read_text().strip()
    # Greedy continuations of a ragged batch do not depend on the padding side.
    args = ["--prompt", "To be", "--prompt", "O", "--max-new-tokens", "5", "--temperature", "0"]
    assert main(["sample", "--checkpoint", str(workdir), *args]) == 0
    greedy = capsys.readouterr().out
    assert "=== 'To be'" in greedy and "=== 'O'" in greedy
    assert main(["sample", "--checkpoint", str(workdir / "checkpoints" / "2"), *args, "--padding", "right"]) == 0
    assert capsys.readouterr().out == greedy


def test_info_reports_gemma3_4b_without_allocating(capsys):
    assert main(["info", "--config", "gemma3_4b"]) == 0
    out = capsys.readouterr().out
    assert "3,880,099,328" in out and "LLLLLG" in out


def test_bad_arguments_explain(capsys, tmp_path):
    assert main(["train", "--config.model.layers=2", "--workdir", str(tmp_path)]) == 2
    assert "no such field" in capsys.readouterr().err
    assert main(["sample", "--checkpoint", str(tmp_path), "--prompt", "x"]) == 2
    assert "config.json" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="needs a value"):
        _split_overrides(["--config.seed"])
    assert _split_overrides(["a", "--config.seed", "3", "--config.x=y"]) == (["a"], {"seed": "3", "x": "y"})
