"""Files planted in a fake torch hub cache: weights named by their own hash, and a pickle that
would run code when loaded."""

import hashlib
import os
import urllib.error
from pathlib import Path

import torch

from {{ cookiecutter.package_name }} import hub_weights


class MakesFolder:
    """Unpickling it calls os.mkdir(marker): a loader that unpickles code leaves the folder."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


def named_by_hash(path: Path, stem: str) -> Path:
    """Rename `path` to `<stem>-<first 8 hex digits of its SHA-256>.pth`, as torch hub names files."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return path.rename(path.with_name(f"{stem}-{digest[:8]}.pth"))


def save_named_by_hash(value: object, folder: Path, stem: str) -> Path:
    """torch.save `value` into `folder` under a name carrying its hash (see named_by_hash)."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(value, folder / "unnamed.pth")
    return named_by_hash(folder / "unnamed.pth", stem)


def url_of(path: Path) -> str:
    """A download URL whose file name is `path`'s, as torchvision's weights URLs are."""
    return f"https://download.pytorch.org/models/{path.name}"


def offline_torch_cache(tmp_path: Path, monkeypatch) -> Path:
    """An empty torch hub cache in tmp_path (TORCH_HOME) and no way out to the network: a test
    that tries fails. Returns the cache's checkpoints/ folder."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def no_network(*args, **kwargs):
        raise AssertionError("a test touched the network")

    monkeypatch.setattr(hub_weights.socket, "create_connection", no_network)
    monkeypatch.setattr(torch.hub, "urlopen", no_network)
    return tmp_path / "torch" / "hub" / "checkpoints"


def unreachable_torch_home(tmp_path: Path, monkeypatch) -> Path:
    """An empty TORCH_HOME in tmp_path whose weights' host answers but whose downloads fail, as
    they do offline. Returns the TORCH_HOME folder."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))

    def offline(url, *args, **kwargs):
        raise urllib.error.URLError("network is unreachable (test)")

    monkeypatch.setattr(hub_weights, "host_answers", lambda url: True)
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    return tmp_path / "torch-home"
