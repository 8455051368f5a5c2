"""Resolution under $MTP_HOME, checksums recorded on first use, .safetensors copies and direct downloads (served
from 127.0.0.1: nothing leaves the machine)."""

from __future__ import annotations

import dataclasses
import http.server
import json
import os
import threading
from pathlib import Path

import pytest
import torch

from mtp.models import create_backbone, load_checkpoint
from mtp.weights import (
    UnknownWeightsError,
    WeightsError,
    WeightsIntegrityError,
    WeightsNotFoundError,
    convert,
    download,
    expected_path,
    resolve_checkpoint,
    safetensors_path,
    verify,
    weights_path,
)
from mtp.weights.store import forget, read_hashes

TINY = dict(embed_dim=32, depth=4, num_heads=2, interval=2, out_indices=(0, 1, 2, 3))


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("MTP_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def write_encoder_file(home: Path) -> dict:
    """A tiny ViT+RVSA in the official MTP encoder layout (state_dict + optimizer extras + a numpy array)."""
    torch.manual_seed(0)
    state = create_backbone("vit_b_rvsa", img_size=32, **TINY).state_dict()
    path = expected_path("mtp:vit_b_rvsa")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"epoch": 1, "iteration": 10, "state_dict": state, "optimizer": {"state": {}}}, path)
    return state


def test_a_missing_file_says_what_to_download_from_where_and_where_to_put_it(home):
    with pytest.raises(WeightsNotFoundError) as err:
        weights_path("mtp:vit_l_rvsa")
    message = str(err.value)
    target = home / "last_vit_l_rvsa_ss_is_rd_pretrn_model_encoder.pth"
    assert f"put it at {target}" in message and "Backbone Weights" in message
    assert "https://pan.baidu.com/s/1Zh6yv2AouboGEP4phyR7xA?pwd=yqv9" in message and "1drv.ms" in message
    assert "MTP_HOME" in message and "pass the file's path" in message
    with pytest.raises(WeightsNotFoundError, match="mtp weights download imp:internimage_xl"):
        weights_path("imp:internimage_xl")  # the one file with a direct link
    with pytest.raises(UnknownWeightsError, match="did you mean mtp:vit_b_rvsa"):
        resolve_checkpoint("mtp:vit_b_rsva")
    assert resolve_checkpoint("some/file.pth") == Path("some/file.pth")


def test_checksum_is_recorded_on_first_use_and_a_changed_file_is_an_error(home):
    state = write_encoder_file(home)
    path = resolve_checkpoint("mtp:vit_b_rvsa")
    assert path == home / "last_vit_b_rvsa_ss_is_rd_pretrn_model_encoder.pth"
    record = read_hashes()[path.name]
    assert len(record["sha256"]) == 64 and record["size"] == path.stat().st_size
    model = create_backbone("vit_b_rvsa", img_size=32, pretrained="mtp:vit_b_rvsa", **TINY)
    torch.testing.assert_close(model.state_dict(), state)
    assert [c.status for c in verify("mtp:vit_b_rvsa")] == ["verified"]
    # Same size, other bytes, new time: the next load re-hashes and refuses.
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(record["mtime_ns"] + 10**9, record["mtime_ns"] + 10**9))
    with pytest.raises(WeightsIntegrityError, match=r"differs from .* recorded") as err:
        load_checkpoint(create_backbone("vit_b_rvsa", img_size=32, **TINY), "mtp:vit_b_rvsa")
    assert "mtp weights verify NAME --reset" in str(err.value)
    assert forget("mtp:vit_b_rvsa") == [path.name]
    assert verify("mtp:vit_b_rvsa")[0].status == "recorded"


def test_convert_writes_a_safetensors_copy_once_and_loads_prefer_it(home):
    state = write_encoder_file(home)
    copy, written = convert("mtp:vit_b_rvsa")
    assert written and copy == safetensors_path("mtp:vit_b_rvsa") and copy.suffix == ".safetensors"
    assert convert("mtp:vit_b_rvsa") == (copy, False)
    from safetensors import safe_open

    with safe_open(copy, "pt") as f:
        meta = f.metadata()
        assert set(f.keys()) == set(state)
    assert meta["source"] == "last_vit_b_rvsa_ss_is_rd_pretrn_model_encoder.pth" and meta["catalogue_name"]
    assert meta["source_sha256"] == read_hashes()[meta["source"]]["sha256"]
    assert weights_path("mtp:vit_b_rvsa") == copy
    model = create_backbone("vit_b_rvsa", img_size=32, pretrained="mtp:vit_b_rvsa", **TINY)
    torch.testing.assert_close(model.state_dict(), state)
    assert {c.path for c in verify("mtp:vit_b_rvsa")} == {copy, copy.with_suffix(".pth")}
    expected_path("mtp:vit_b_rvsa").unlink()  # the copy alone is enough
    assert weights_path("mtp:vit_b_rvsa") == copy
    with pytest.raises(WeightsNotFoundError):
        convert("mae:vit_b_rvsa")


class _Server:
    """http.server on 127.0.0.1 in a thread: '/file' serves ``body``, '/short' announces more than it sends."""

    def __init__(self, body: bytes) -> None:
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests += 1  # before answering: the client may return before this thread runs on
                if self.path == "/missing":
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body) + (100 if self.path == "/short" else 0)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.requests = 0
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    srv = _Server(b"0123456789" * 1000)
    yield srv
    srv.close()


def test_download_from_a_direct_link_is_atomic_and_recorded(home, server, monkeypatch):
    from mtp.weights import catalogue

    entry = catalogue.CATALOGUE["imp:internimage_xl"]
    monkeypatch.setitem(catalogue.CATALOGUE, entry.name, dataclasses.replace(entry, url=server.url + "/file"))
    path = download("imp:internimage_xl")
    assert path == home / "internimage_xl_22kto1k_384.pth" and path.read_bytes() == b"0123456789" * 1000
    assert read_hashes()[path.name]["size"] == 10000
    assert download("imp:internimage_xl") == path and server.requests == 1  # present: not fetched again
    assert list(home.glob(".*part")) == []


def test_failed_downloads_leave_nothing_behind(home, server):
    for suffix, fragment in (("/short", "stopped at 10000 of 10100 bytes"), ("/missing", "HTTP Error 404")):
        with pytest.raises(WeightsError, match=fragment):
            download("mtp:vit_b_rvsa", url=server.url + suffix)
        assert not expected_path("mtp:vit_b_rvsa").exists() and list(home.glob(".*")) == []
    with pytest.raises(WeightsError, match="no direct download link"):
        download("loveda:upernet_vit_b_rvsa_mae_mtp")
    assert download("mtp:vit_b_rvsa", url=server.url + "/file").stat().st_size == 10000  # a mirror


def test_an_unreadable_checksum_record_is_a_clear_error(home):
    write_encoder_file(home)
    (home / "hashes.json").write_text("{not json")
    with pytest.raises(WeightsError, match=r"hashes\.json: unreadable checksum record"):
        weights_path("mtp:vit_b_rvsa")
    (home / "hashes.json").write_text(json.dumps({"files": {}}))
    assert weights_path("mtp:vit_b_rvsa").is_file()
