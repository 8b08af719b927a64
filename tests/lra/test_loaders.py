"""Loaders on small files written here (release TSVs, IMDb-like JSON/CSV, CIFAR-like arrays) and the collate."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

from lra.data import LRADataset, collate, load_dataset
from lra.errors import LRAError
from lra.loaders import load_aan_release, load_cifar10, load_imdb, to_gray
from lra.tasks import TASKS, get_task


def test_registry_matches_the_benchmark():
    want = {"listops": (2000, 10, False), "text": (4096, 2, False), "retrieval": (4000, 2, True),
            "image": (1024, 10, False), "pathfinder": (1024, 2, False), "pathx": (16384, 2, False)}
    assert {k: (t.seq_len, t.num_classes, t.two_tower) for k, t in TASKS.items()} == want
    with pytest.raises(LRAError, match="unknown LRA task"):
        get_task("lisops")


def test_missing_release_names_the_archive(tmp_path):
    for task in ("listops", "retrieval", "pathfinder", "pathx"):
        with pytest.raises(LRAError, match="lra_release.gz"):
            load_dataset(task, "train", tmp_path)


def test_aan_pairs_two_tower_batch(tmp_path):
    d = tmp_path / "lra_release" / "lra_release" / "tsv_data"
    d.mkdir(parents=True)
    for split in ("train", "eval", "test"):
        (d / f"new_aan_pairs.{split}.tsv").write_text(
            f"1.0\tid1\tid2\tabc {split}\txy\n0.0\tid3\tid4\tno second text\n")
    with pytest.raises(LRAError, match="5 tab-separated columns"):
        load_aan_release(tmp_path, "train")
    for split in ("train", "eval", "test"):
        (d / f"new_aan_pairs.{split}.tsv").write_text(f"1.0\tid1\tid2\tabc {split}\txy\n0.0\tid3\tid4\t\"q\"\tz\n")
    assert load_aan_release(tmp_path, "val") == [("abc eval", "xy", 1), ('"q"', "z", 0)]
    ds = load_dataset("retrieval", "train", tmp_path)
    batch = collate([ds[0], ds[1]])
    assert batch["ids"].shape == (2, 9) and batch["ids2"].shape == (2, 9)
    assert batch["ids"][0].tolist() == [b + 1 for b in b"abc train"]
    assert batch["mask"][1].tolist() == [True] * 3 + [False] * 6
    assert batch["mask2"].sum().item() == 3 and batch["label"].tolist() == [1, 0]


def test_imdb_local_json_and_csv(tmp_path):
    rows = [{"text": "good film é", "label": 1}, {"text": "bad", "label": 0}]
    (tmp_path / "j").mkdir()
    (tmp_path / "j" / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    (tmp_path / "j" / "test.jsonl").write_text(json.dumps(rows[1]))
    assert load_imdb("train", str(tmp_path / "j")) == [("good film é", 1), ("bad", 0)]
    assert load_imdb("val", str(tmp_path / "j")) == [("bad", 0)]  # LRA validates on test
    (tmp_path / "c.csv").write_text("text,label\nhello,1\n")
    ds = LRADataset("text", load_imdb("train", str(tmp_path / "c.csv")))
    assert ds[0]["ids"].tolist() == [b + 1 for b in b"hello"]
    (tmp_path / "bad.csv").write_text("review,sentiment\nx,1\n")
    with pytest.raises(LRAError, match="'text' and 'label'"):
        load_imdb("train", str(tmp_path / "bad.csv"))


def test_text_truncates_to_task_length():
    ds = LRADataset("text", [("a" * 5000, 1)])
    assert ds[0]["ids"].shape == (4096,)
    assert collate([ds[0]], pad_to=4096)["mask"].all()


def test_cifar_python_batches_and_npz(tmp_path):
    rng = np.random.default_rng(0)
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    (d / "batches.meta").write_bytes(pickle.dumps({}))
    planes = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(4, 3072), dtype=np.uint8)
        planes[name] = data
        (d / name).write_bytes(pickle.dumps({b"data": data, b"labels": list(range(4))}))
    train, val, test = (load_cifar10(s, str(d)) for s in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (18, 2, 4)  # 90/10 of the 20 train images
    r, g, b = (planes["test_batch"][1, k * 1024:(k + 1) * 1024].reshape(32, 32) for k in range(3))
    want = np.floor((0.2989 * r + 0.5870 * g + 0.1140 * b) / 255 * 255.5).clip(0, 255)
    assert np.abs(test[1][0].astype(int) - want).max() <= 1 and test[1][1] == 1
    np.savez(tmp_path / "c.npz", test_images=np.full((2, 32, 32, 3), 255, np.uint8), test_labels=np.array([3, 4]))
    got = load_cifar10("test", str(tmp_path / "c.npz"))
    assert got[0][0].shape == (32, 32) and got[0][0].min() >= 254 and got[1][1] == 4
    item = LRADataset("image", got)[0]
    assert item["ids"].shape == (1024,) and item["ids"].max() <= 255


def test_gray_weights_order():
    assert to_gray(np.array([[255, 0, 0]], np.uint8))[0] == 76  # 0.2989 * 255.5
    assert to_gray(np.array([[0, 0, 255]], np.uint8))[0] == 29


def test_collate_pads_with_mask():
    batch = collate([{"ids": torch.tensor([5, 6, 7]), "label": torch.tensor(1)},
                     {"ids": torch.tensor([0]), "label": torch.tensor(0)}])
    assert batch["ids"].tolist() == [[5, 6, 7], [0, 0, 0]]
    assert batch["mask"].tolist() == [[True] * 3, [True, False, False]]  # id 0 can be a real pixel
