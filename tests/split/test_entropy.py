"""The learned entropy bottleneck: real rANS bitstreams that decode to the same symbols,
tables that survive saving, a rate term that lowers the bytes, and a split run whose
entropy head is served over real HTTP and answers as the same model does locally."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("compressai", reason="optional: see edgedistill.split.entropy.INSTALL")

from edgedistill.config import validate  # noqa: E402
from edgedistill.config.split import SplitExperiment  # noqa: E402
from edgedistill.split.entropy import EntropyCodec, entropy_bottleneck  # noqa: E402
from edgedistill.split.wire import decode, encode_entropy  # noqa: E402
from tests.split.conftest import tiny_split_config  # noqa: E402

RNG = np.random.default_rng(0)


def fitted(channels: int = 3, steps: int = 150) -> torch.nn.Module:
    """An EntropyBottleneck fitted briefly to ReLU'd Gaussians of scale 2, tables fixed."""
    torch.manual_seed(0)
    eb = entropy_bottleneck(channels)
    opt = torch.optim.Adam(eb.parameters(), lr=0.01)
    for _ in range(steps):
        z = torch.relu(torch.randn(16, channels, 6, 6) * 2)
        _, lik = eb(z)
        loss = -torch.log2(lik).mean() + eb.loss()
        opt.zero_grad()
        loss.backward()
        opt.step()
    eb.update(force=True)
    return eb.eval()


def test_bitstreams_decode_to_the_same_symbols_and_count_real_bytes():
    codec = EntropyCodec(fitted())
    z = np.maximum(RNG.standard_normal((4, 3, 6, 6)) * 2, 0).astype(np.float32)
    z[0, 0, 0, 0] = 500.0  # far outside the coder's range: escaped, still exact
    streams = codec.encode(z)
    assert len(streams) == 4 and all(isinstance(s, bytes) and s for s in streams)
    medians = codec.bottleneck._get_medians().detach().numpy().reshape(1, 3, 1, 1)
    symbols = np.rint(z - medians)
    got = codec.decode(streams, z.shape)
    assert np.array_equal(np.rint(got - medians), symbols)
    with torch.no_grad():  # the eval forward (what training scored) is the codec's output
        assert np.allclose(got, codec.bottleneck(torch.from_numpy(z))[0].numpy(), atol=1e-5)
    # the model fits these values: fewer bits than the 8 bits/value of the 8-bit codec
    assert sum(map(len, streams[1:])) < 3 * z[0].size
    message = encode_entropy(streams, z.shape)
    assert len(message) == 9 + 16 + 4 + sum(4 + len(s) for s in streams)
    back = decode(message)
    assert np.array_equal(codec.decode(back.streams, back.shape), got)


def test_saved_tables_give_the_same_bytes(tmp_path):
    codec = EntropyCodec(fitted())
    codec.save(tmp_path)
    again = EntropyCodec.from_dir(tmp_path)
    z = np.maximum(RNG.standard_normal((2, 3, 6, 6)) * 2, 0).astype(np.float32)
    assert again.encode(z) == codec.encode(z)
    assert torch.equal(again.bottleneck._quantized_cdf, codec.bottleneck._quantized_cdf)


def test_garbage_streams_decode_to_finite_values_and_shape_mismatches_are_refused():
    from edgedistill.errors import UsageError

    codec = EntropyCodec(fitted(steps=20))
    for stream in (b"", b"\xff" * 7, bytes(RNG.integers(0, 256, 300, dtype=np.uint8))):
        assert np.all(np.isfinite(codec.decode([stream], (1, 3, 6, 6))))
    with pytest.raises(UsageError, match="do not fit"):
        codec.decode([b"x"], (1, 4, 6, 6))
    with pytest.raises(UsageError, match="no CDF tables"):
        EntropyCodec(entropy_bottleneck(3))


@pytest.fixture(scope="module")
def entropy_run(tmp_path_factory, teacher_file):
    """A tiny split run with two entropy heads (beta 0 and a large beta) and KD stage."""
    from edgedistill.split.train import run_split_train

    out = tmp_path_factory.mktemp("entropy") / "run"
    cfg = validate(tiny_split_config(str(teacher_file), **{
        "bottleneck.channels": [4], "bottleneck.betas": [0.0, 5.0], "train.epochs": 2,
        "data.options.num_train": 384, "finetune.epochs": 1,
        "train.optimizer.lr": 0.01}), SplitExperiment)
    run_split_train(cfg, out, progress=False)
    return out


def test_entropy_heads_are_trained_measured_and_beta_buys_bytes(entropy_run):
    from edgedistill.split.model import read_meta

    meta = read_meta(entropy_run)
    rows = {b["name"]: b for b in meta["bottlenecks"]}
    assert set(rows) == {"c4-e0", "c4-e0-kd", "c4-e5", "c4-e5-kd"}
    assert all(r["codec"] == "entropy" for r in rows.values())
    assert rows["c4-e5"]["beta"] == 5.0
    for name in rows:
        assert (entropy_run / name / "entropy.safetensors").is_file()
    # a rate term of 5 per bit against an MSE of order 1 cuts the coded bytes (the
    # message less its 33-byte header: 9 + 4 dims + 1 stream length)
    payload = {k: rows[k]["bytes_per_sample"] - 33 for k in ("c4-e0", "c4-e5")}
    assert payload["c4-e5"] < 0.8 * payload["c4-e0"], payload
    assert "entropy beta 5" in (entropy_run / "table.md").read_text()


def test_wire_accuracy_and_bytes_are_the_real_coder_path(entropy_run):
    from edgedistill.config import load_config
    from edgedistill.data import normalize
    from edgedistill.split.model import load_split, read_meta
    from edgedistill.split.train import load_split_data

    cfg = load_config(entropy_run / "config.yaml", SplitExperiment)
    _, test = load_split_data(cfg)
    row = next(b for b in read_meta(entropy_run)["bottlenecks"] if b["name"] == "c4-e5-kd")
    model = load_split(entropy_run / "c4-e5-kd")
    codec = EntropyCodec.from_dir(entropy_run / "c4-e5-kd")
    x = normalize(test.images, test.mean, test.std)
    with torch.no_grad():
        z = model.device_part(x).numpy()
        sizes = [len(encode_entropy(codec.encode(z[i:i + 1]), z[i:i + 1].shape))
                 for i in range(len(z))]
        received = np.concatenate([codec.decode(codec.encode(z[i:i + 1]), z[i:i + 1].shape)
                                   for i in range(len(z))])
        logits = model.server_part()(torch.from_numpy(received))
        local = model(x)
    assert row["bytes_per_sample"] == pytest.approx(np.mean(sizes))
    acc = (logits.argmax(1) == test.labels).float().mean().item()
    assert row["acc_quantized"] == pytest.approx(acc)
    assert torch.equal(logits.argmax(1), local.argmax(1))  # eval forward == the wire path


def test_server_and_client_round_trip_the_entropy_codec_over_http(entropy_run):
    """A real uvicorn server (thread, 127.0.0.1) serving an entropy head; the real
    device client sends bitstreams; the answers are the local model's."""
    import httpx

    from edgedistill.split.client import SplitClient
    from edgedistill.split.connections import ConnectionLimits
    from edgedistill.split.images import normalize_uint8
    from edgedistill.split.model import load_split, read_meta
    from edgedistill.split.server import create_app
    from edgedistill.split.service import SplitService
    from edgedistill.split.wire import MEDIA_TYPE, encode
    from tests.split.live_server import live_server

    name = "c4-e5-kd"
    meta = read_meta(entropy_run)
    images = RNG.integers(0, 256, (4, *meta["input_shape"]), np.uint8)
    model = load_split(entropy_run / name)
    codec = EntropyCodec.from_dir(entropy_run / name)
    with torch.no_grad():
        x = torch.from_numpy(normalize_uint8(images, meta["mean"], meta["std"]))
        expected = model(x).argmax(1).tolist()
        z = model.device_part(x).numpy()
    sizes = [len(encode_entropy(codec.encode(z[i:i + 1]), z[i:i + 1].shape)) for i in range(4)]
    token = "k" * 43
    app = create_app(SplitService.from_run(entropy_run, name, "torch"), token, max_batch=8)
    with live_server(app, ConnectionLimits()) as port:
        url = f"http://127.0.0.1:{port}"
        with SplitClient(entropy_run, url, token, name) as client:
            got = [client.infer(images[i:i + 1]) for i in range(4)]
            batch = client.infer(images)
        auth = {"Authorization": f"Bearer {token}", "Content-Type": MEDIA_TYPE}
        info = httpx.get(url + "/v1/info", headers=auth).json()
        eight_bit = httpx.post(url + "/v1/split", headers=auth,
                               content=encode(z[:1].astype(np.float32)))
        cut = encode_entropy([b"\x00"], z[:1].shape)[:-3]
        truncated = httpx.post(url + "/v1/split", headers=auth, content=cut)
    assert [g["predictions"][0] for g in got] == expected == batch["predictions"]
    assert [g["bytes"]["payload"] for g in got] == sizes
    assert "entropy" in info["codecs"]
    assert eight_bit.status_code == 200  # the decoder also takes unquantized values
    assert truncated.status_code == 400 and "truncated" in truncated.json()["error"]


def test_density_refit_keeps_the_medians_so_the_values_sent_do_not_move():
    from edgedistill.split.entropy import EntropyHead

    torch.manual_seed(0)
    head = EntropyHead((1, 8, 8), (4, 4, 4), channels=2, width=4)
    x = torch.randn(8, 1, 8, 8)
    before = head.entropy.quantiles.detach().clone()
    head.refit_density([x, x * 2], steps=30)
    after = head.entropy.quantiles.detach()
    assert torch.equal(after[:, :, 1], before[:, :, 1])
    assert not torch.equal(after, before)  # the density and the range were refitted
    head.train()  # in training the decoder gets round(z - median) + median, as sent
    z_hat, bits = head.rate(x)
    z = head.encoder(x)
    medians = head.entropy._get_medians().reshape(1, -1, 1, 1)
    assert torch.allclose(z_hat, torch.round(z - medians) + medians) and bits.item() > 0
