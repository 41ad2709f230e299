"""Decoding while streaming: PNG folders (grey, palette, RGBA and RGB files, read by PIL)
give their exact pixels and the in-memory batches; JPEGs that ``decode_jpeg`` refuses
fall back to PIL; and a corrupt JPEG, through the real ``edgedistill distill``, is
skipped with a warning naming it (``on_corrupt: skip``) or stops the run naming it."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from edgedistill import api
from edgedistill.data import transforms
from edgedistill.data.transforms import CorruptImage, decode_bytes
from edgedistill.models import create_model
from edgedistill.train.checkpoint import save_weights
from tests.conftest import run_cli
from tests.data.test_streaming import assert_same, data_config, pipelines

MODES = ("RGB", "L", "P", "RGBA")


@pytest.fixture(scope="module")
def png_folder(tmp_path_factory):
    """16 train / 8 val PNGs of 32 x 32, 2 classes, cycling through ``MODES``, and the
    RGB pixels PIL gives for each (what every decoder must agree on)."""
    from PIL import Image

    root, rng, pixels = tmp_path_factory.mktemp("pngs"), np.random.default_rng(3), {}
    for split, n in (("train", 16), ("val", 8)):
        for i in range(n):
            folder = root / split / f"class{i % 2}"
            folder.mkdir(parents=True, exist_ok=True)
            rgb = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            img = Image.fromarray(rgb).convert(MODES[i % 4])
            if img.mode == "RGBA":
                img.putalpha(Image.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8)))
            img.save(folder / f"{i:03d}.png")
            with Image.open(folder / f"{i:03d}.png") as back:
                assert back.mode == MODES[i % 4]
                pixels[folder / f"{i:03d}.png"] = np.asarray(back.convert("RGB"))
    return root, pixels


def test_a_png_folder_streams_its_exact_pixels(png_folder):
    root, pixels = png_folder
    cfg = data_config(root, batch_size=4, eval_batch_size=8,
                      transform_options={"eval_crop_ratio": 1.0})  # eval: the image itself
    train, test = pipelines(cfg)
    batch = next(iter(test.epoch(0)))
    assert len(batch) == 8 and len(test) == 1
    for k in range(8):
        want = torch.from_numpy(pixels[root / test.data.where(k)].copy()).permute(2, 0, 1)
        assert torch.equal(batch.raw[k], want), test.data.where(k)
    shapes = {b.raw.shape for b in train.epoch(0)}  # random resized crops of every mode
    assert shapes == {(4, 3, 32, 32)}


def test_a_png_folder_streams_the_in_memory_batches(png_folder):
    root, _ = png_folder
    memory = data_config(root, streaming=False, batch_size=4, eval_batch_size=8)
    train_m, _, test_m = api.build_splits(memory, 0)
    streamed = data_config(root, transform="fit", mean=list(train_m.mean),
                           std=list(train_m.std), batch_size=4, eval_batch_size=8)
    train_s, _, test_s = api.build_splits(streamed, 0)
    mem = api.build_pipelines(memory, train_m, test_m, 0, "cpu")
    stream = api.build_pipelines(streamed, train_s, test_s, 0, "cpu")
    for epoch in (0, 1):
        for a, b in zip(stream[0].epoch(epoch), mem[0].epoch(epoch), strict=True):
            assert_same(a, b)
    for a, b in zip(stream[1].epoch(0), mem[1].epoch(0), strict=True):
        assert_same(a, b)


def refuse_jpegs(monkeypatch) -> list[int]:
    """Fault injection: ``decode_jpeg`` refuses every JPEG, as libjpeg-turbo refuses some
    (it raises RuntimeError); returns the list of refused sizes."""
    refused = []

    def refuse(data, mode=None, device="cpu"):
        refused.append(len(data))
        raise RuntimeError("decode_jpeg: Unsupported marker type 0xcc")

    monkeypatch.setattr(transforms, "decode_jpeg", refuse)
    return refused


def test_jpegs_decode_jpeg_refuses_are_decoded_by_pil(jpeg_folder, monkeypatch):
    from torchvision.io import decode_jpeg, read_file

    path = sorted(jpeg_folder.glob("train/*/*.jpg"))[3]
    data = read_file(str(path))
    refused = refuse_jpegs(monkeypatch)
    got = decode_bytes(data, str(path))
    assert refused == [len(data)]  # tried first, then PIL
    assert torch.equal(got, decode_jpeg(data))  # both libjpeg-turbo: the same pixels
    with pytest.raises(CorruptImage, match=f"cannot decode {path}"):
        decode_bytes(data[:200], str(path))  # what neither reads is corrupt


def test_streaming_with_the_pil_fallback_gives_the_same_batches(jpeg_folder, monkeypatch):
    cfg = data_config(jpeg_folder, workers=0)
    want = [pipelines(cfg)[0].batch(1, step) for step in (0, 4)]
    refused = refuse_jpegs(monkeypatch)
    train, _ = pipelines(cfg)
    for step, b in zip((0, 4), want, strict=True):
        assert_same(train.batch(1, step), b)
    assert len(refused) == 32  # every image of both batches went to PIL


@pytest.fixture(scope="module")
def corrupt_run(jpeg_folder, tmp_path_factory):
    """The JPEG folder with one training image truncated, and a teacher file."""
    import yaml

    tmp = tmp_path_factory.mktemp("corrupt")
    folder = shutil.copytree(jpeg_folder, tmp / "folder")
    bad = folder / "train" / "class1" / "0005.jpg"
    bad.write_bytes(bad.read_bytes()[:200])
    torch.manual_seed(0)
    teacher = create_model("resnet8", num_classes=4, in_channels=3, width=0.25)
    save_weights(tmp / "teacher.safetensors", teacher.state_dict(), teacher.spec)

    def config(on_corrupt: str):
        cfg = {"name": "corrupt", "seed": 0,
               "data": {"dataset": "imagefolder", "root": str(folder), "streaming": True,
                        "options": {"image_size": 16}, "workers": 2, "batch_size": 32,
                        "eval_batch_size": 40, "on_corrupt": on_corrupt},
               "teacher": {"source": str(tmp / "teacher.safetensors"),
                           "allow_unfinished": True},
               "student": {"name": "resnet8", "kwargs": {"width": 0.25}},
               "train": {"epochs": 1, "threads": 1, "progress": False,
                         "optimizer": {"name": "sgd", "lr": 0.05}}}
        path = tmp / f"{on_corrupt}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        return path

    return bad, config, tmp


def test_the_cli_skips_a_corrupt_jpeg_with_a_warning_naming_it(corrupt_run):
    bad, config, tmp = corrupt_run
    result = run_cli("distill", str(config("skip")), "--out", str(tmp / "skip"))
    assert result.returncode == 0, result.stderr
    out = result.stdout + result.stderr
    warning = f"warning: skipping {bad}: no decoder can read it (data.on_corrupt: skip)"
    assert out.count(warning) == 1, out
    summary = json.loads((tmp / "skip" / "summary.json").read_text())
    assert 0 <= summary["final_test_acc"] <= 1


def test_the_cli_stops_at_a_corrupt_jpeg_naming_it(corrupt_run):
    bad, config, tmp = corrupt_run
    result = run_cli("distill", str(config("error")), "--out", str(tmp / "error"))
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"cannot decode {bad}" in result.stderr
    assert "set data.on_corrupt: skip" in result.stderr
    assert "Traceback" not in result.stderr and "skipping" not in result.stdout
    assert not (tmp / "error" / "summary.json").exists()
