"""The streaming pipeline keeps the in-memory pipeline's contract: the same batches
(with the ``fit`` recipe, bit for bit), batches a pure function of (seed, epoch, step)
through worker processes, exact mid-epoch starts, and corrupt files named or skipped."""

from __future__ import annotations

import shutil

import pytest
import torch

from edgedistill import api
from edgedistill.config import DataConfig
from edgedistill.data.stream_sources import pipeline_from_dataset
from edgedistill.data.streaming import StreamingData, StreamingPipeline
from edgedistill.errors import DataMissingError, UsageError
from tests.data.conftest import write_shards


def data_config(root, **over) -> DataConfig:
    raw = {"dataset": "imagefolder", "root": str(root), "options": {"image_size": 32},
           "batch_size": 16, "eval_batch_size": 24, "workers": 2, "streaming": True, **over}
    return DataConfig.model_validate(raw)


def pipelines(cfg: DataConfig, seed: int = 0):
    train, _, test = api.build_splits(cfg, seed)
    return api.build_pipelines(cfg, train, test, seed, "cpu")


def assert_same(a, b):
    assert torch.equal(a.indices, b.indices)
    assert torch.equal(a.labels, b.labels)
    assert torch.equal(a.raw, b.raw)
    assert torch.equal(a.images, b.images)
    assert (a.epoch, a.step, a.draw) == (b.epoch, b.step, b.draw)


def test_fit_recipe_streams_the_in_memory_batches(jpeg_folder):
    memory = data_config(jpeg_folder, streaming=False)
    train_m, _, test_m = api.build_splits(memory, 0)
    streamed = data_config(jpeg_folder, transform="fit", mean=list(train_m.mean),
                           std=list(train_m.std))
    train_s, _, test_s = api.build_splits(streamed, 0)
    assert isinstance(train_s, StreamingData) and len(train_s) == len(train_m) == 160
    mem_train, mem_test = api.build_pipelines(memory, train_m, test_m, 0, "cpu")
    str_train, str_test = api.build_pipelines(streamed, train_s, test_s, 0, "cpu")
    assert len(str_train) == len(mem_train) == 10
    for epoch in (0, 3):  # augmented: the same pad-crop and flip draws
        for a, b in zip(str_train.epoch(epoch), mem_train.epoch(epoch), strict=True):
            assert_same(a, b)
    for a, b in zip(str_test.epoch(0), mem_test.epoch(0), strict=True):
        assert_same(a, b)


def test_batches_are_a_pure_function_of_seed_epoch_and_step(jpeg_folder):
    train, test = pipelines(data_config(jpeg_folder))
    again, _ = pipelines(data_config(jpeg_folder, workers=0))
    epoch = list(train.epoch(2))
    assert len(epoch) == len(train) == 10 and epoch[0].raw.shape == (16, 3, 32, 32)
    for a, b in zip(epoch, again.epoch(2), strict=True):  # 2 workers vs this process
        assert_same(a, b)
    assert_same(train.batch(2, 7), epoch[7])
    for a, b in zip(train.epoch(2, start_step=6), epoch[6:], strict=True):
        assert_same(a, b)
    other = train.batch(3, 7)
    assert not torch.equal(other.raw, epoch[7].raw) and other.draw == 3
    seen = torch.cat([b.indices for b in epoch])
    assert len(set(seen.tolist())) == 160  # each sample once per epoch
    first = next(iter(test.epoch(0)))
    assert first.indices.tolist() == list(range(24)) and first.draw == 0
    assert torch.equal(first.raw, next(iter(test.epoch(5))).raw)  # eval: no augmentation


def test_num_draws_cycle_and_seeds_differ(jpeg_folder):
    train, _ = pipelines(data_config(jpeg_folder, num_draws=2))
    assert train.draw_for_epoch(4) == 0 and train.draw_for_epoch(5) == 1
    a, b = train.batch(0, 0), train.batch(2, 0)
    order = {int(i): k for k, i in enumerate(b.indices)}
    same = [order[int(i)] for i in a.indices if int(i) in order]
    rows_a = [k for k, i in enumerate(a.indices) if int(i) in order]
    assert torch.equal(a.raw[rows_a], b.raw[same])  # the same draw: the same crops
    seeded, _ = pipelines(data_config(jpeg_folder), seed=1)
    assert not torch.equal(seeded.batch(0, 0).indices, train.batch(0, 0).indices)


def test_webdataset_shards_stream_the_folders_batches(jpeg_folder, tmp_path):
    shards = write_shards(jpeg_folder, tmp_path / "shards", per_shard=50)
    assert len(list((shards / "train").glob("*.tar"))) == 4
    folder, _ = pipelines(data_config(jpeg_folder))
    tars, _ = pipelines(data_config(shards, dataset="webdataset", streaming=None))
    assert tars.data.num_classes == 4
    for a, b in zip(tars.epoch(1), folder.epoch(1), strict=True):
        assert_same(a, b)


def test_a_torch_dataset_streams_through_the_python_api(jpeg_folder):
    from torchvision.io import decode_image

    files = sorted(jpeg_folder.glob("train/*/*.jpg"))
    classes = sorted({f.parent.name for f in files})

    class Decoded(torch.utils.data.Dataset):
        targets = [classes.index(f.parent.name) for f in files]

        def __len__(self):
            return len(files)

        def __getitem__(self, i):
            return decode_image(str(files[i])), self.targets[i]

    pipe = pipeline_from_dataset(Decoded(), image_size=32, batch_size=16, train=True,
                                 workers=2)
    folder, _ = pipelines(data_config(jpeg_folder))
    assert isinstance(pipe, StreamingPipeline) and pipe.data.num_classes == 4
    for a, b in zip(pipe.epoch(0), folder.epoch(0), strict=True):
        assert_same(a, b)


def test_eval_recipe_matches_torchvision_resize_and_centre_crop(jpeg_folder):
    from torchvision.io import decode_jpeg, read_file
    from torchvision.transforms import functional as TF

    _, test = pipelines(data_config(jpeg_folder, options={"image_size": 24}))
    files = sorted(jpeg_folder.glob("val/*/*.jpg"))
    batch = next(iter(test.epoch(0)))
    for k in (0, 5, 17):
        img = decode_jpeg(read_file(str(files[k])))
        want = TF.center_crop(TF.resize(img, [round(24 / 0.875)], antialias=True), [24, 24])
        assert batch.raw[k].shape == want.shape  # its uint8 resize rounds via float: 1 off
        assert (batch.raw[k].int() - want.int()).abs().max() <= 1


def test_over_the_memory_budget_streams_and_says_so(jpeg_folder):
    lines = []
    cfg = data_config(jpeg_folder, streaming=None, memory_budget_gb=1e-4)
    train, _, _ = api.build_splits(cfg, 0, log=lines.append)
    assert isinstance(train, StreamingData)
    assert len(lines) == 1 and "streaming it from disk" in lines[0] and "0.000572 GiB" in lines[0]
    roomy, _, _ = api.build_splits(data_config(jpeg_folder, streaming=None), 0,
                                   log=lines.append)
    assert not isinstance(roomy, StreamingData) and len(lines) == 1


def test_streaming_a_dataset_held_in_memory_only_is_refused():
    with pytest.raises(UsageError, match="'synthetic' is held in memory only"):
        api.build_splits(DataConfig(dataset="synthetic", streaming=True), 0)


@pytest.fixture
def corrupt_folder(jpeg_folder, tmp_path):
    folder = shutil.copytree(jpeg_folder, tmp_path / "folder")
    bad = folder / "train" / "class2" / "0010.jpg"
    bad.write_bytes(bad.read_bytes()[:200])  # truncated mid-scan
    return folder, bad


def test_a_corrupt_jpeg_stops_the_run_naming_it(corrupt_folder):
    folder, bad = corrupt_folder
    train, _ = pipelines(data_config(folder))
    with pytest.raises(DataMissingError, match=f"cannot decode {bad}.*on_corrupt: skip"):
        list(train.epoch(0))


def test_a_corrupt_jpeg_is_skipped_with_a_warning_naming_it(corrupt_folder):
    folder, bad = corrupt_folder
    cfg = data_config(folder, on_corrupt="skip")
    train, _, test = api.build_splits(cfg, 0)
    lines = []
    pipe = StreamingPipeline(train, 16, train=True, workers=2, on_corrupt="skip",
                             log=lines.append)
    batches = list(pipe.epoch(0))
    bad_position = next(i for i in range(len(train)) if train.where(i) == str(bad))
    seen = torch.cat([b.indices for b in batches]).tolist()
    assert len(seen) == 159 and bad_position not in seen
    assert lines == [f"warning: skipping {bad}: no decoder can read it (data.on_corrupt: skip)"]
    short = next(b for b in batches if len(b) == 15)
    assert_same(pipe.batch(0, short.step), short)  # still a pure function


def test_decoding_in_the_main_process_gives_the_workers_batches(jpeg_folder):
    """On a GPU the workers only read bytes and the main process decodes (nvJPEG); the
    same path, pointed at the CPU, must give exactly the batches the workers make."""
    train, _ = pipelines(data_config(jpeg_folder))
    main, _ = pipelines(data_config(jpeg_folder))
    main.decode_device = torch.device("cpu")
    prepared = main.prepare(main.positions(1, 2), main.sample_draw(1))
    assert isinstance(prepared["images"], list) and prepared["images"][0].dim() == 1
    for a, b in zip(main.epoch(1), train.epoch(1), strict=True):
        assert_same(a, b)


def test_a_data_parallel_rank_streams_its_slice_of_the_global_batch(jpeg_folder, monkeypatch):
    """Like BatchPipeline, a streaming pipeline built without ``shard`` asks the process
    group for its rank (here the group is faked: tests/train/test_ddp.py runs real ranks)."""
    from edgedistill.train import distributed

    cfg = data_config(jpeg_folder)
    whole, _ = pipelines(cfg)
    parts = []
    for rank in range(2):
        monkeypatch.setattr(distributed, "world", lambda rank=rank: distributed.World(rank, 2))
        parts.append(pipelines(cfg)[0])
    assert [(p.rank, p.world_size) for p in parts] == [(0, 2), (1, 2)]
    for epoch, step in [(0, 0), (2, 3)]:
        full = whole.batch(epoch, step)
        sliced = [p.batch(epoch, step) for p in parts]
        assert [len(s) for s in sliced] == [8, 8]
        for field in ("indices", "labels", "raw", "images"):
            assert torch.equal(torch.cat([getattr(s, field) for s in sliced]),
                               getattr(full, field))
