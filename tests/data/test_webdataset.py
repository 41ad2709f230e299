"""WebDataset shards: samples are grouped by WebDataset's key rule (everything before the
first dot of the file's name), and shards written by the ``webdataset`` package's own
``ShardWriter`` stream the same batches as the folder they were made from."""

from __future__ import annotations

import io
import tarfile

import pytest
import torch
import webdataset as wds
from webdataset.tariterators import base_plus_ext

from edgedistill.data.readers import TarShardReader, sample_field
from edgedistill.errors import DataMissingError
from tests.data.test_streaming import assert_same, data_config, pipelines

NAMES = ["a/b/sample001.seg.jpg", "a/b/sample001.jpg", "a/b/sample001.cls",
         "v1.2/x.PNG", "v1.2/x.cls", "v1.2/x.meta.json", "README", ".hidden", "dir/.hidden", "a/b.",
         "a.b/c"]


def write_tar(path, members: dict[str, bytes]):
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def jpeg(colour) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (20, 12), colour).save(out, "JPEG")
    return out.getvalue()


def test_sample_keys_end_at_the_first_dot_of_the_file_name():
    assert sample_field("a/b/sample001.seg.jpg") == ("a/b/sample001", "seg.jpg")
    assert sample_field("v1.2/x.PNG") == ("v1.2/x", "png")  # dots in folders are kept
    assert sample_field("README") is None and sample_field(".hidden") is None
    for name in NAMES:  # the webdataset package's own rule (lower-casing the field)
        key, field = base_plus_ext(name)
        assert sample_field(name) == (None if key is None else (key, field.lower()))


def test_a_sample_with_a_segmentation_image_is_one_sample_read_by_its_jpg(tmp_path):
    red, blue, green = jpeg((255, 0, 0)), jpeg((0, 0, 255)), jpeg((0, 255, 0))
    shard = write_tar(tmp_path / "s.tar", {
        "a/b/sample001.seg.jpg": blue, "a/b/sample001.jpg": red, "a/b/sample001.cls": b"2",
        "v1.2/x.PNG": green, "v1.2/x.cls": b"0", "v1.2/x.meta.json": b"{}"})
    reader = TarShardReader([shard])
    assert len(reader) == 2 and reader.labels == [2, 0]
    assert reader.where(0) == f"{shard}:a/b/sample001.jpg"
    assert reader.where(1) == f"{shard}:v1.2/x.PNG"
    assert bytes(reader.read(0).tolist()) == red and bytes(reader.read(1).tolist()) == green


def test_two_images_in_one_sample_are_refused_naming_both(tmp_path):
    shard = write_tar(tmp_path / "s.tar", {"k.jpg": jpeg((0, 0, 0)), "k.png": b"x",
                                           "k.cls": b"1"})
    with pytest.raises(DataMissingError, match=r"sample 'k' has two images \(k.jpg and k.png\)"):
        TarShardReader([shard])


def write_with_webdataset(folder, out, per_shard: int = 50):
    """The folder's images through ``wds.ShardWriter``, each sample with a second image
    field (``seg.jpg``, the image mirrored) and a ``json`` field that the reader ignores."""
    for split in ("train", "val"):
        files = sorted(folder.glob(f"{split}/*/*.jpg"))
        classes = sorted({f.parent.name for f in files})
        (out / split).mkdir(parents=True)
        with wds.ShardWriter(str(out / split / "shard-%04d.tar"), maxcount=per_shard,
                             verbose=0) as sink:
            for f in files:
                mirrored = io.BytesIO()
                from PIL import Image

                Image.open(f).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(mirrored, "JPEG")
                sink.write({"__key__": f"{f.parent.name}/{f.stem}", "jpg": f.read_bytes(),
                            "seg.jpg": mirrored.getvalue(), "cls": classes.index(f.parent.name),
                            "json": {"file": f.name}})
    return out


def test_shards_written_by_webdataset_stream_the_folders_batches(jpeg_folder, tmp_path):
    shards = write_with_webdataset(jpeg_folder, tmp_path / "wds")
    assert len(list((shards / "train").glob("*.tar"))) == 4
    keys = [s["__key__"] for s in wds.WebDataset(str(shards / "train" / "shard-0000.tar"),
                                                 shardshuffle=False)]
    tars, _ = pipelines(data_config(shards, dataset="webdataset", streaming=None))
    assert [tars.data.where(i).split(":", 1)[1] for i in range(50)] == [f"{k}.jpg" for k in keys]
    folder, _ = pipelines(data_config(jpeg_folder))
    assert len(tars.data) == len(folder.data) == 160 and tars.data.num_classes == 4
    assert torch.equal(tars.data.labels, folder.data.labels)
    for a, b in zip(tars.epoch(1), folder.epoch(1), strict=True):
        assert_same(a, b)
