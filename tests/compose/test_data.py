"""Proxy data: file-level splits of the stdlib corpus, byte tokens, the cache, batches, eval windows, HF text."""

import numpy as np
import pytest
import torch

from compose.data import DataError, TokenData, load_data, load_hf_text, load_stdlib, split_of, stdlib_files


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AIRA_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def fake_stdlib(tmp_path):
    """A small stdlib-shaped tree: 60 modules with unique markers, plus dirs that must be skipped."""
    root = tmp_path / "lib"
    for i in range(60):
        pkg = root / ("pkg" if i % 3 == 0 else "") / f"mod{i:02d}.py"
        pkg.parent.mkdir(parents=True, exist_ok=True)
        pkg.write_text(f"# MARK{i:02d}\n" + "x = 1\n" * (i + 1))
    for skipped in ("test/test_a.py", "pkg/tests/test_b.py", "site-packages/thirdparty.py", "notes.txt"):
        (root / skipped).parent.mkdir(parents=True, exist_ok=True)
        (root / skipped).write_text("# SKIPPED\n")
    return root


def test_split_by_file_is_deterministic_and_disjoint(fake_stdlib):
    files = stdlib_files(fake_stdlib)
    assert len(files) == 60 and not any("test" in f or "site-packages" in f for f in files)
    data = load_stdlib(root=fake_stdlib, fractions=(0.6, 0.2, 0.2), cache=False)
    seen = {}
    for split, arr in data.splits.items():
        text = arr.tobytes().decode()
        assert "SKIPPED" not in text
        for i in range(60):
            if f"MARK{i:02d}" in text:
                assert i not in seen, f"file {i} in both {seen[i]} and {split}"
                seen[i] = split
    assert len(seen) == 60  # every file lands in exactly one split
    # The split of a file is a function of its relative path alone.
    assert all(seen[int(f[-5:-3])] == split_of(f, (0.6, 0.2, 0.2)) for f in files)
    again = load_stdlib(root=fake_stdlib, fractions=(0.6, 0.2, 0.2), cache=False)
    assert again.fingerprint() == data.fingerprint()


def test_tokens_are_the_file_bytes(fake_stdlib):
    data = load_stdlib(root=fake_stdlib, fractions=(0.6, 0.2, 0.2), cache=False)
    assert data.vocab_size == 256
    for arr in data.splits.values():
        assert arr.dtype == np.uint8
    train = data.split("train").tobytes()
    f = next(f for f in stdlib_files(fake_stdlib) if split_of(f, (0.6, 0.2, 0.2)) == "train")
    assert (fake_stdlib / f).read_bytes() in train


def test_caps_and_cache(fake_stdlib, tmp_path):
    data = load_stdlib(root=fake_stdlib, caps_mb={"train": 100 / 2**20}, fractions=(0.6, 0.2, 0.2))
    assert data.sizes()["train"] == 100
    cached = list((tmp_path / "cache").glob("*.npy"))
    assert len(cached) == 3
    again = load_stdlib(root=fake_stdlib, caps_mb={"train": 100 / 2**20}, fractions=(0.6, 0.2, 0.2))
    assert again.fingerprint() == data.fingerprint() and again.info == data.info
    with pytest.raises(DataError, match="fractions"):
        load_stdlib(root=fake_stdlib, fractions=(0.5, 0.2, 0.2))


def test_real_stdlib_loads():
    data = load_data("stdlib")
    sizes = data.sizes()
    assert sizes["train"] > 1_000_000 and sizes["val"] > 50_000 and sizes["test"] > 50_000
    assert data.info["files"]["train"]["total"] > 10 * data.info["files"]["val"]["total"] > 0


def _toy(n=5000):
    rng = np.random.default_rng(0)
    return TokenData("toy", {s: rng.integers(0, 256, n, dtype=np.uint8) for s in ("train", "val", "test")})


def test_batches_are_deterministic_by_seed():
    data = _toy()
    a, b, c = (data.batches(16, 4, seed=s) for s in (1, 1, 2))
    for _ in range(3):
        (xa, ya), (xb, yb), (xc, _) = next(a), next(b), next(c)
        assert torch.equal(xa, xb) and torch.equal(ya, yb) and not torch.equal(xa, xc)
        assert xa.shape == (4, 16) and xa.dtype == torch.int64
        assert torch.equal(xa[:, 1:], ya[:, :-1])  # targets are the inputs shifted by one


def test_eval_windows_are_fixed_and_non_overlapping():
    data = _toy(1000)
    windows = list(data.eval_windows("val", 100, batch_size=3))
    x = torch.cat([w[0] for w in windows])
    y = torch.cat([w[1] for w in windows])
    assert x.shape == (9, 100)  # (1000 - 1) // 100 whole windows
    val = torch.from_numpy(data.split("val").astype(np.int64))
    assert torch.equal(y.flatten(), val[1:901])  # every target once, in order
    assert torch.equal(x.flatten(), val[:900])
    capped = list(data.eval_windows("val", 100, batch_size=3, max_tokens=450))
    assert sum(w[1].numel() for w in capped) == 400
    with pytest.raises(DataError, match="seq_len"):
        next(data.eval_windows("val", 5000, batch_size=1))
    with pytest.raises(DataError, match="no split"):
        data.split("dev")


def test_hf_local_text_files(tmp_path):
    pytest.importorskip("datasets")
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(100):
        (docs / f"doc{i:02d}.txt").write_text(f"document {i} " + "lorem ipsum dolor sit amet. " * 20 + "\n")
    hf_cache = tmp_path / "hf"
    data = load_hf_text(str(docs), hf_cache_dir=hf_cache)
    assert data.vocab_size == 256 and all(n > 0 for n in data.sizes().values())
    # Split by document: each document's marker is in exactly one split.
    assert isinstance(data.info["documents"], dict)
    texts = {s: a.tobytes().decode() for s, a in data.splits.items()}
    for i in range(100):
        assert sum(f"document {i} " in t for t in texts.values()) == 1
    assert load_hf_text(str(docs / "*.txt"), hf_cache_dir=hf_cache).fingerprint() == data.fingerprint()

    # One file: too few documents to split by hash, so the text is cut into contiguous pieces.
    one = tmp_path / "one.txt"
    one.write_text("héllo wörld\n" * 500)
    small = load_hf_text(str(one), hf_cache_dir=hf_cache)
    joined = b"".join(small.split(s).tobytes() for s in ("train", "val", "test"))
    assert joined == one.read_bytes() + b"\n" and small.sizes()["train"] > 10 * small.sizes()["val"]


def test_load_data_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_data(str(tmp_path / "missing.txt"))
    with pytest.raises(DataError, match="no files match"):
        load_data(str(tmp_path / "*.nothing"))
