"""torch's hub cache, read without running code: a cached file must match the hash its name
carries and is read with weights_only=True; downloads go through torch.hub's own, hash-checked.
Everything here is offline: the cache is a temporary folder and the network is a fake."""

import email.message
import io
import threading
import time

import pytest
import torch

from {{ cookiecutter.package_name }} import hub_weights
from {{ cookiecutter.package_name }}.errors import UserError

from ..hub_cache_files import (
    MakesFolder,
    named_by_hash,
    offline_torch_cache,
    save_named_by_hash,
    url_of,
)


@pytest.fixture
def checkpoints(tmp_path, monkeypatch):
    """The checkpoints/ folder of an empty torch hub cache in tmp_path, and no network."""
    return offline_torch_cache(tmp_path, monkeypatch)


def state() -> dict:
    torch.manual_seed(0)
    return torch.nn.Linear(3, 2).state_dict()


def test_a_cached_file_matching_its_name_loads(checkpoints):
    cached = save_named_by_hash(state(), checkpoints, "linear")
    loaded = hub_weights.load_state_dict(url_of(cached))
    expected = state()
    assert loaded.keys() == expected.keys()
    assert all(torch.equal(loaded[key], expected[key]) for key in loaded)


def test_a_planted_pickle_never_runs_even_under_a_name_matching_its_hash(checkpoints, tmp_path):
    marker = tmp_path / "payload-ran"
    cached = save_named_by_hash({"weight": MakesFolder(marker)}, checkpoints, "linear")
    with pytest.raises(UserError) as error:
        hub_weights.load_state_dict(url_of(cached))
    assert not marker.exists()
    message = str(error.value)
    assert message.startswith(f"{cached} in torch's hub cache cannot be read (it holds Python")
    assert "could run code" in message
    assert message.endswith("delete it so that it is downloaded again")
    assert "\n" not in message


def test_a_planted_pickle_under_the_real_name_is_refused_by_its_hash(checkpoints, tmp_path):
    marker = tmp_path / "payload-ran"
    checkpoints.mkdir(parents=True)
    torch.save({"weight": MakesFolder(marker)}, checkpoints / "resnet18-f37072fd.pth")
    with pytest.raises(UserError, match="is not the file its name promises") as error:
        hub_weights.load_state_dict("https://download.pytorch.org/models/resnet18-f37072fd.pth")
    assert not marker.exists()
    assert "resnet18-f37072fd.pth" in str(error.value) and "delete it" in str(error.value)


def test_a_truncated_cached_file_is_one_sentence_naming_it(checkpoints):
    cached = save_named_by_hash(state(), checkpoints, "linear")
    cached.write_bytes(cached.read_bytes()[:-100])  # a copy that stopped short: the hash differs
    with pytest.raises(UserError) as error:
        hub_weights.load_state_dict(url_of(cached))
    assert str(error.value).startswith(f"{cached} in torch's hub cache is not the file its name")
    assert "cut short" in str(error.value) and "delete it" in str(error.value)
    # Cut short under a name that matches what is left: torch.load itself fails on it.
    renamed = named_by_hash(cached, "short")
    with pytest.raises(UserError) as error:
        hub_weights.load_state_dict(url_of(renamed))
    assert str(error.value) == (
        f"{renamed} in torch's hub cache cannot be read (it is damaged or was not written by "
        "torch.save: RuntimeError); delete it so that it is downloaded again"
    )


def test_a_missing_file_is_downloaded_by_torch_hub_with_the_hash_of_its_name(
    checkpoints, tmp_path, monkeypatch
):
    source = save_named_by_hash(state(), tmp_path / "server", "linear")
    calls = []

    def download(url, dst, hash_prefix=None, progress=True):
        calls.append((url, hash_prefix))
        torch.save(state(), dst)

    monkeypatch.setattr(hub_weights, "host_answers", lambda url: True)
    monkeypatch.setattr(torch.hub, "download_url_to_file", download)
    assert hub_weights.fetch(url_of(source)) == checkpoints / source.name
    assert hub_weights.fetch(url_of(source)) == checkpoints / source.name  # the cached one
    assert calls == [(url_of(source), source.name[len("linear-") : -len(".pth")])]


def test_an_unanswered_host_is_a_download_error_naming_it(checkpoints, monkeypatch):
    monkeypatch.setattr(hub_weights, "host_answers", lambda url: False)
    with pytest.raises(hub_weights.DownloadError, match="download.pytorch.org did not answer"):
        hub_weights.fetch("https://download.pytorch.org/models/resnet18-f37072fd.pth")
    assert not checkpoints.exists() or not any(checkpoints.iterdir())


class BrokenResponse(io.BytesIO):
    """An HTTP response whose connection drops after `size` of `total` bytes."""

    def __init__(self, size: int, total: int) -> None:
        super().__init__(b"x" * size)
        self.total = total

    def info(self) -> email.message.Message:
        headers = email.message.Message()
        headers["Content-Length"] = str(self.total)
        return headers

    def read(self, amount: int = -1) -> bytes:
        chunk = super().read(amount)
        if not chunk and self.total > self.tell():
            raise ConnectionResetError("connection reset by peer")
        return chunk


@pytest.mark.parametrize("size", [1000, 5000], ids=["cut-off", "wrong-hash"])
def test_a_failed_download_leaves_nothing_in_the_cache(checkpoints, monkeypatch, size):
    # torch's own download code runs; only the connection under it is fake.
    monkeypatch.setattr(hub_weights, "host_answers", lambda url: True)
    monkeypatch.setattr(torch.hub, "urlopen", lambda request: BrokenResponse(size, 5000))
    with pytest.raises(hub_weights.DownloadError):
        hub_weights.fetch("https://download.pytorch.org/models/vgg16-397923af.pth")
    assert list(checkpoints.iterdir()) == []


def test_the_connect_check_goes_to_the_proxy_when_one_is_set(monkeypatch):
    tried = []

    def refuse(address, timeout):
        tried.append(address)
        raise ConnectionRefusedError("refused")

    monkeypatch.setattr(hub_weights.socket, "create_connection", refuse)
    monkeypatch.setenv("https_proxy", "http://proxy.example:3128")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    hub_weights.host_answers("https://download.pytorch.org/models/x.pth", timeout=1)
    assert tried == [("proxy.example", 3128)]


def test_an_unanswered_connection_gives_up_after_the_timeout(monkeypatch):
    release = threading.Event()

    def hang(*args, **kwargs):  # like a DNS lookup on a machine without a network
        release.wait(30)
        raise OSError("timed out")

    monkeypatch.setattr(hub_weights.socket, "create_connection", hang)
    started = time.monotonic()
    try:
        assert not hub_weights.host_answers("https://example.invalid/x.pth", timeout=0.2)
        assert time.monotonic() - started < 5
    finally:
        release.set()
