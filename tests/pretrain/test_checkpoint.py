"""Checkpoint integrity: a file damaged in place (same size) is refused on resume, with the way back."""

import json
import re
import subprocess
from pathlib import Path

import pytest

from pretrain import checkpoint
from pretrain.errors import PretrainError

OPTIM = "zero_pp_rank_0_mp_rank_00_optim_states.pt"


class FakeEngine:
    """Writes files where DeepSpeed's save_checkpoint would; their bytes differ per step."""

    def save_checkpoint(self, root, tag, client_state, save_latest):
        d = Path(root) / tag
        d.mkdir(parents=True)
        step = client_state["step"]
        (d / "mp_rank_00_model_states.pt").write_bytes(bytes([step]) * 4096)
        (d / OPTIM).write_bytes(bytes(range(256)) * 64 + bytes([step]))


def save_steps(root: Path, *steps: int) -> None:
    for step in steps:
        checkpoint.save(FakeEngine(), root, step, {}, {"step": step}, is_main=True, keep=5)


def flip_a_byte(path: Path, at: int = 1000) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(data)


def test_a_file_changed_in_place_is_refused_and_the_message_leads_back_to_the_previous_step(tmp_path):
    root = tmp_path / "my run" / "checkpoints"  # a space, for the shell command in the message
    save_steps(root, 4, 8)
    bad = root / checkpoint.tag_of(8) / OPTIM
    size = bad.stat().st_size
    flip_a_byte(bad)
    assert bad.stat().st_size == size
    with pytest.raises(PretrainError, match=f"{OPTIM} is not what was saved") as err:
        checkpoint.check(root, {})
    assert "newest intact checkpoint is step-00000004" in str(err.value)
    # Doing what the message says resumes from step 4.
    subprocess.run(re.search(r"`(.+?)`", str(err.value)).group(1), shell=True, check=True)
    assert checkpoint.check(root, {})[0] == checkpoint.tag_of(4)
    assert not (root / checkpoint.tag_of(8)).exists()


def test_with_no_intact_older_step_the_message_says_to_start_again(tmp_path):
    root = tmp_path / "checkpoints"
    save_steps(root, 4, 8)
    flip_a_byte(root / checkpoint.tag_of(4) / OPTIM)
    flip_a_byte(root / checkpoint.tag_of(8) / "mp_rank_00_model_states.pt")
    with pytest.raises(PretrainError, match="mp_rank_00_model_states.pt .*no older checkpoint .* is intact"):
        checkpoint.check(root, {})


def test_checkpoints_saved_before_checksums_keep_the_size_check(tmp_path):
    root = tmp_path / "checkpoints"
    save_steps(root, 4)
    d = root / checkpoint.tag_of(4)
    meta = json.loads((d / "meta.json").read_text())
    assert set(meta["sha256"]) == set(meta["files"]) == {"mp_rank_00_model_states.pt", OPTIM}
    del meta["sha256"]  # as written before checksums were recorded
    (d / "meta.json").write_text(json.dumps(meta))
    flip_a_byte(d / OPTIM)
    assert checkpoint.check(root, {})[0] == checkpoint.tag_of(4)  # nothing to compare the bytes with
    with open(d / OPTIM, "ab") as fh:
        fh.write(b"x")
    with pytest.raises(PretrainError, match=f"{OPTIM} is missing or has the wrong size"):
        checkpoint.check(root, {})
