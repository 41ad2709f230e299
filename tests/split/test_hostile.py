"""Hostile bodies against the app with the real tiny split model: values that overflow,
truncated images. Each answer is a 4xx naming the problem, never a 500."""

from __future__ import annotations

import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageFile

from edgedistill.split.server import create_app
from edgedistill.split.service import SplitService
from edgedistill.split.wire import MEDIA_TYPE, encode
from tests.split.test_wire import _raw

TOKEN = "h" * 32


@pytest.fixture(scope="module")
def real(split_run):
    service = SplitService.from_run(split_run, backend="torch")
    with TestClient(create_app(service, TOKEN), raise_server_exceptions=False) as c:
        c.headers["Authorization"] = f"Bearer {TOKEN}"
        yield c, service


def post(client, body, kind=MEDIA_TYPE, path="/v1/split?logits=true"):
    return client.post(path, content=body, headers={"Content-Type": kind})


def test_scale_that_dequantizes_to_inf_is_400(real):
    client, service = real
    n = int(np.prod(service.bottleneck_shape))
    body = _raw(dims=(1, *service.bottleneck_shape), scales=(1e37,), payload=b"\xff" * n)
    r = post(client, body)
    assert r.status_code == 400 and "stay finite" in r.json()["error"]


@pytest.mark.parametrize("value,status", [(1e30, 200), (3.3e38, 422), (-3.3e38, 422)])
def test_float_values_that_overflow_the_model_are_422(real, value, status):
    client, service = real
    r = post(client, encode(np.full((1, *service.bottleneck_shape), value, np.float32)))
    assert r.status_code == status, r.text
    if status == 200:
        assert np.all(np.isfinite(r.json()["logits"]))
    else:
        assert "not finite" in r.json()["error"]


def test_largest_scale_reaches_the_model_and_is_refused_there(real):
    client, service = real
    n = int(np.prod(service.bottleneck_shape))
    body = _raw(dims=(1, *service.bottleneck_shape), scales=(1.3e36,), payload=b"\xff" * n)
    r = post(client, body)
    assert r.status_code == 422 and "not finite" in r.json()["error"]
    z = np.random.default_rng(0).standard_normal((1, *service.bottleneck_shape), np.float32)
    assert post(client, encode(z)).status_code == 200


def _image(fmt: str, mode: str, size: tuple[int, int]) -> bytes:
    rng = np.random.default_rng(1)
    shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, shape, np.uint8)).save(buf, fmt)
    return buf.getvalue()


@pytest.mark.parametrize("fmt,kind", [("PNG", "image/png"), ("JPEG", "image/jpeg")])
def test_truncated_images_are_400_at_every_cut(real, fmt, kind):
    client, service = real
    c, h, w = service.input_shape
    data = _image(fmt, "L" if c == 1 else "RGB", (w, h))
    assert post(client, data, kind, "/v1/classify").status_code == 200
    cuts = [*range(1, 40), *range(40, len(data), 7)]
    statuses = {cut: post(client, data[:-cut], kind, "/v1/classify").status_code
                for cut in cuts}
    assert all(s == 400 for s in statuses.values()), statuses
    r = post(client, data[:-1], kind, "/v1/classify")
    assert "truncated" in r.json()["error"]
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
