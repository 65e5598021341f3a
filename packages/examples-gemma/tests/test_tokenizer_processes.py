"""With two processes, only process 0 trains the BPE tokenizer; both end with its model.

The parent starts two children (CPU, gloo, loopback) that each call
``load_or_train_tokenizer`` with their *own* cache directory, as on two machines without
a shared disk. This file is also the children's program:
``python test_tokenizer_processes.py PROCESS_ID PORT CACHE_DIR OUT_FILE``.
"""

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

DOCS = [
    "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer",
    "The slings and arrows of outrageous fortune,\nOr to take arms against a sea of troubles",
    "All the world's a stage,\nAnd all the men and women merely players;",
]
VOCAB = 300
TIMEOUT_S = 120


def child(process_id: int, port: int, cache_dir: str, out_file: str) -> None:
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=2,
                               process_id=process_id, initialization_timeout=60)
    from plait.examples.gemma import _tokenizer

    trained = []
    real_train = _tokenizer.train_sentencepiece

    def train(*args, **kwargs):
        trained.append(process_id)
        return real_train(*args, **kwargs)

    _tokenizer.train_sentencepiece = train
    tok = _tokenizer.load_or_train_tokenizer(DOCS * 10, VOCAB, cache_dir, "fingerprint")
    model = Path(tok.model_file)
    Path(out_file).write_text(json.dumps({
        "trained": len(trained),
        "sha256": hashlib.sha256(model.read_bytes()).hexdigest(),
        "in_own_cache": model.parent == Path(cache_dir),
        "round_trip": tok.decode(tok.encode(DOCS[0])) == DOCS[0],
    }))
    jax.distributed.shutdown()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_only_process_0_trains_and_every_process_gets_its_model(tmp_path):
    port = _free_port()
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1", JAX_PLATFORMS="cpu")
    children = []
    for i in range(2):
        log = open(tmp_path / f"process{i}.log", "wb")
        children.append((subprocess.Popen(
            [sys.executable, __file__, str(i), str(port), str(tmp_path / f"cache{i}"),
             str(tmp_path / f"out{i}.json")],
            env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT), log))
    deadline = time.monotonic() + TIMEOUT_S
    try:
        for child_process, _ in children:
            child_process.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        for child_process, log in children:
            if child_process.poll() is None:
                child_process.kill()
            log.close()
    logs = [(tmp_path / f"process{i}.log").read_text(errors="replace")[-2000:] for i in range(2)]
    assert all(c.returncode == 0 for c, _ in children), "\n".join(logs)
    first, second = (json.loads((tmp_path / f"out{i}.json").read_text()) for i in range(2))
    assert (first["trained"], second["trained"]) == (1, 0)
    assert first["sha256"] == second["sha256"]
    assert first["in_own_cache"] and second["in_own_cache"]
    assert first["round_trip"] and second["round_trip"]


if __name__ == "__main__":
    child(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4])
