"""Weights and training files on local paths and cloud URLs (blobfile, faked by the ``bucket`` fixture)."""

from __future__ import annotations

import pytest
import torch

from guided_diffusion import storage
from guided_diffusion.checkpoint import read_checkpoint
from guided_diffusion.errors import UserError
from guided_diffusion.train_log import ProgressLog
from guided_diffusion.train_state import latest_checkpoint, prune_checkpoints, write_checkpoint

RUN = "gs://bucket/run"


class Interrupted(Exception):
    """Stands for a crash in the middle of a save."""


def _fail_half_way(f):
    f.write(b"half a checkpoint")
    raise Interrupted


@pytest.mark.parametrize("path,url", [("gs://b/x.pt", True), ("az://acct/box/x.pt", True),
                                      ("https://acct.blob.core.windows.net/box/x.pt", True),
                                      ("models/x.pt", False), ("/abs/x.pt", False)])
def test_urls_are_told_from_local_paths(path, url):
    assert storage.is_url(path) is url


def test_local_files_round_trip(tmp_path):
    target = tmp_path / "deep" / "x.bin"
    storage.makedirs(target.parent)
    assert storage.write_binary(target, lambda f: f.write(b"abc")) == target
    assert storage.is_file(target) and not storage.is_file(tmp_path) and storage.listdir(target.parent) == ["x.bin"]
    with storage.open_binary_for_read(target) as f:
        assert f.read() == b"abc"
    storage.append_text(target, "def")
    assert target.read_bytes() == b"abcdef"
    storage.remove(target)
    storage.remove(target)  # a missing file is not an error
    assert storage.listdir(target.parent) == [] and storage.listdir(tmp_path / "missing") == []


def test_an_interrupted_local_write_leaves_the_old_file(tmp_path):
    target = tmp_path / "x.pt"
    target.write_bytes(b"old")
    with pytest.raises(Interrupted):
        storage.write_binary(target, _fail_half_way)
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["x.pt"]


def test_urls_go_to_blobfile(bucket, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = f"{RUN}/x.bin"
    assert storage.join(RUN, "x.bin") == path
    storage.write_binary(path, lambda f: f.write(b"abc"))
    storage.append_text(path, "def")
    assert bucket.objects == {path: b"abcdef"}
    assert storage.is_file(path) and not storage.is_file(RUN) and storage.listdir(RUN) == ["x.bin"]
    with storage.open_binary_for_read(path) as f:
        assert f.read() == b"abcdef"
    storage.remove(path)
    assert bucket.objects == {} and storage.listdir(RUN) == []
    assert list(tmp_path.iterdir()) == [], "nothing may be written locally"


def test_an_interrupted_upload_is_not_published(bucket):
    bucket.objects[f"{RUN}/x.pt"] = b"old"
    with pytest.raises(Interrupted):
        storage.write_binary(f"{RUN}/x.pt", _fail_half_way)
    with pytest.raises(Interrupted):
        storage.write_binary(f"{RUN}/y.pt", _fail_half_way)
    assert bucket.objects == {f"{RUN}/x.pt": b"old"}


def test_checkpoints_in_a_bucket(bucket):
    weights = {"w": torch.arange(3.0)}
    for step in (1, 2, 3):
        written = write_checkpoint(RUN, step, {"format": "x", "step": step}, {"0.9999": weights})
        assert written == f"{RUN}/checkpoint_{step:07d}.pt"
    assert latest_checkpoint(RUN) == f"{RUN}/checkpoint_0000003.pt"
    assert latest_checkpoint("gs://bucket/empty") is None
    prune_checkpoints(RUN, keep_last=2)
    assert sorted(bucket.objects) == [f"{RUN}/{kind}_{step:07d}.pt"
                                      for kind in ("checkpoint", "ema_0.9999") for step in (2, 3)]
    assert read_checkpoint(f"{RUN}/checkpoint_0000003.pt")["step"] == 3
    assert torch.equal(read_checkpoint(f"{RUN}/ema_0.9999_0000002.pt", flag="--init_weights")["w"], weights["w"])
    with pytest.raises(UserError, match="--init_weights gs://bucket/run/nope.pt: the checkpoint file does not exist"):
        read_checkpoint(f"{RUN}/nope.pt", flag="--init_weights")


def test_progress_log_in_a_bucket_drops_rows_after_the_resumed_step(bucket):
    path = f"{RUN}/progress.csv"
    log = ProgressLog(path)
    for step in (1, 2, 3):
        log.add("loss", float(step))
        log.write(step, {})
    ProgressLog(path, start_step=2)
    rows = bucket.objects[path].decode().splitlines()
    assert rows[0].startswith("step,samples,loss") and [r.split(",")[:3] for r in rows[1:]] == [
        ["1", "", "1.0"], ["2", "", "2.0"]]
