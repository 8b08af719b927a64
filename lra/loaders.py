"""Raw examples of each LRA task, from the official release archive or from HF `datasets`.

Every loader returns a plain list for one split (train / val / test) of
  (text_or_ids, label) for single-input tasks, or (text1, text2, label) for Retrieval,
  (image path or uint8 array, label) for image tasks;
encoding to token ids is lra/data.py's job. Split rules follow the LRA code (docs/lra.md):
ListOps and AAN ship their own splits; IMDb validates on its test split; CIFAR-10 validates on the last
10% of train; Pathfinder is cut 80/10/10 after a seeded shuffle (the release has no split files).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from lra.errors import RELEASE_HELP, LRAError

SPLITS = ("train", "val", "test")
_AAN_SPLIT = {"train": "train", "val": "eval", "test": "test"}  # the release calls validation "eval"


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise LRAError(f"unknown split {split!r}; choose one of {SPLITS}")


def find_release_dir(root: str | Path, sub: str, probe: str) -> Path:
    """The folder `sub` of an unpacked lra_release (accepting root at any level above it) holding `probe`."""
    root = Path(root).expanduser()
    for cand in (root, root / sub, root / "lra_release" / sub, root / "lra_release" / "lra_release" / sub):
        if (cand / probe).exists():
            return cand
    raise LRAError(f"no {sub}/{probe} under {root}: {RELEASE_HELP}")


# ------------------------------------------------------------------------------------ release archive
def load_listops_release(root: str | Path, split: str, task: str = "basic") -> list[tuple[str, int]]:
    """(source, target) rows of listops-1000/{task}_{split}.tsv (columns Source, Target)."""
    _check_split(split)
    path = find_release_dir(root, "listops-1000", f"{task}_train.tsv") / f"{task}_{split}.tsv"
    if not path.is_file():
        raise LRAError(f"missing {path}: {RELEASE_HELP}")
    rows = []
    with path.open() as f:
        header = f.readline().rstrip("\n").split("\t")
        if header[:2] != ["Source", "Target"]:
            raise LRAError(f"{path} should start with the header 'Source\\tTarget', got {header}")
        for n, line in enumerate(f, start=2):
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 2 or not parts[1].strip().isdigit():
                raise LRAError(f"{path}:{n}: expected 'source<TAB>digit', got {line[:80]!r}")
            rows.append((parts[0], int(parts[1])))
    return rows


def load_aan_release(root: str | Path, split: str) -> list[tuple[str, str, int]]:
    """(text1, text2, label) rows of tsv_data/new_aan_pairs.{train,eval,test}.tsv.

    Columns: label, id1, id2, text1, text2; tab-separated, no header, no quoting (as LRA reads them).
    """
    _check_split(split)
    path = find_release_dir(root, "tsv_data", "new_aan_pairs.train.tsv") / f"new_aan_pairs.{_AAN_SPLIT[split]}.tsv"
    if not path.is_file():
        raise LRAError(f"missing {path}: {RELEASE_HELP}")
    rows = []
    with path.open(encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, start=1):
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 5:
                raise LRAError(f"{path}:{n}: expected 5 tab-separated columns (label id1 id2 text1 text2), "
                               f"got {len(parts)}")
            try:
                label = int(float(parts[0]))
            except ValueError:
                raise LRAError(f"{path}:{n}: label {parts[0]!r} is not a number") from None
            rows.append((parts[3], parts[4], label))
    return rows


def load_pathfinder_release(
    root: str | Path, split: str, resolution: int = 32, difficulty: str = "curv_contour_length_14", seed: int = 42
) -> list[tuple[Path, int]]:
    """(png path, label) of pathfinder{resolution}/{difficulty}; Path-X is resolution 128.

    Metadata files `metadata/<batch>.npy` are read as text lines `<subdir> <file> <index> <label> ...`
    (the release's files are text despite the suffix); binary .npy string arrays are accepted too.
    Empty image files are skipped, as the LRA pipeline filters them.
    """
    _check_split(split)
    base = find_release_dir(root, f"pathfinder{resolution}", f"{difficulty}/metadata") / difficulty
    metas = sorted((base / "metadata").glob("*.npy"), key=lambda p: (len(p.stem), p.stem))
    if not metas:
        raise LRAError(f"no metadata/*.npy in {base}: {RELEASE_HELP}")
    samples = []
    for meta in metas:
        for row in _read_metadata(meta):
            if len(row) < 4:
                raise LRAError(f"{meta}: a metadata line needs at least 4 fields (dir file index label), got {row}")
            path = base / row[0] / row[1]
            if path.is_file() and path.stat().st_size > 0:
                samples.append((path, int(row[3])))
    order = np.random.default_rng(seed).permutation(len(samples))
    a, b = int(0.8 * len(samples)), int(0.9 * len(samples))
    pick = {"train": order[:a], "val": order[a:b], "test": order[b:]}[split]
    return [samples[i] for i in pick]


def _read_metadata(path: Path) -> list[list[str]]:
    raw = path.read_bytes()
    if raw.startswith(b"\x93NUMPY"):
        arr = np.load(path, allow_pickle=False)
        return [[str(v) for v in row] for row in np.atleast_2d(arr)]
    return [line.split() for line in raw.decode("utf-8").splitlines() if line.strip()]


def read_png(path: str | Path) -> np.ndarray:
    """A grayscale image as a uint8 (H, W) array."""
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("L"), dtype=np.uint8)


# ------------------------------------------------------------------------------------ HF datasets
def _hf_load(source: str, split: str):
    """A HF split from a hub name, or from a local file/folder (json, jsonl, csv, parquet)."""
    import datasets

    path = Path(source).expanduser()
    if path.exists():
        files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.stem.startswith(split))
        if not files:
            raise LRAError(f"no file for split {split!r} in {path} (expected names like {split}.jsonl)")
        kind = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}.get(files[0].suffix)
        if kind is None:
            raise LRAError(f"{files[0]}: local data must be .json/.jsonl/.csv/.parquet")
        return datasets.load_dataset(kind, data_files=[str(f) for f in files], split="train")
    return datasets.load_dataset(source, split=split)


def load_imdb(split: str, source: str = "imdb") -> list[tuple[str, int]]:
    """(review text, 0/1) of IMDb; LRA validates on the test split (IMDb has no validation split)."""
    _check_split(split)
    ds = _hf_load(source, "test" if split == "val" else split)
    missing = {"text", "label"} - set(ds.column_names)
    if missing:
        raise LRAError(f"IMDb data from {source!r} lacks columns {sorted(missing)}; it needs 'text' and 'label'")
    return list(zip(ds["text"], (int(v) for v in ds["label"])))


def to_gray(rgb: np.ndarray) -> np.ndarray:
    """uint8 (..., 3) RGB -> uint8 gray the way tf.image.rgb_to_grayscale does (LRA's Image task)."""
    y = (rgb.astype(np.float32) / 255.0) @ np.array([0.2989, 0.5870, 0.1140], dtype=np.float32)
    return np.clip(y * 255.5, 0, 255).astype(np.uint8)  # convert_image_dtype's float -> uint8 rule


def load_cifar10(split: str, source: str = "cifar10") -> list[tuple[np.ndarray, int]]:
    """(gray uint8 32x32, class) of CIFAR-10; val = the last 10% of train, as LRA's tfds split."""
    _check_split(split)
    images, labels = _cifar_arrays(source, "test" if split == "test" else "train")
    if split != "test":
        cut = int(0.9 * len(images))
        images, labels = (images[:cut], labels[:cut]) if split == "train" else (images[cut:], labels[cut:])
    gray = to_gray(images)
    return [(gray[i], int(labels[i])) for i in range(len(gray))]


def _cifar_arrays(source: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """RGB uint8 (N, 32, 32, 3) and labels from cifar-10-batches-py, an .npz, or HF datasets."""
    path = Path(source).expanduser()
    if path.is_dir() and (path / "batches.meta").exists():
        # The official python release: pickled dicts with b"data" (N, 3072; R, G, B planes) and b"labels".
        names = ["test_batch"] if split == "test" else [f"data_batch_{i}" for i in range(1, 6)]
        xs, ys = [], []
        for name in names:
            if not (path / name).is_file():
                raise LRAError(f"missing {path / name}: cifar-10-batches-py needs data_batch_1..5 and test_batch")
            with (path / name).open("rb") as f:
                d = pickle.load(f, encoding="bytes")
            xs.append(np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
            ys.append(np.asarray(d[b"labels"]))
        return np.concatenate(xs), np.concatenate(ys)
    if path.suffix == ".npz":
        with np.load(path) as z:
            keys = (f"{split}_images", f"{split}_labels")
            if not all(k in z for k in keys):
                raise LRAError(f"{path} needs arrays {keys} (uint8 N x 32 x 32 x 3 and int labels)")
            return z[keys[0]].astype(np.uint8), z[keys[1]]
    ds = _hf_load(source, split)
    img_col = "img" if "img" in ds.column_names else "image"
    if img_col not in ds.column_names or "label" not in ds.column_names:
        raise LRAError(f"CIFAR-10 data from {source!r} needs an 'img' (or 'image') column and 'label'")
    images = np.stack([np.asarray(im.convert("RGB"), dtype=np.uint8) for im in ds[img_col]])
    return images, np.asarray(ds["label"])
