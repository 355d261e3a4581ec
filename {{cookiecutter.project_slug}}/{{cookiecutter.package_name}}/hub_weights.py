"""Pretrained weights for any task, read without running code: torch's hub cache (downloaded
once) and the files --pretrained names.

torchvision's own loading (`weights=...`) unpickles a cached file with weights_only=False and
checks its hash only while downloading, so a file planted or damaged in a shared cache would
run or load as it is. Here a cached file must match the SHA-256 prefix its name carries (torch
hub's convention: `resnet18-f37072fd.pth` starts with f37072fd) and is read with weights_only=True.
"""

import functools
import hashlib
import pickle
import socket
import threading
import urllib.request
from collections.abc import Collection
from pathlib import Path
from urllib.parse import urlsplit

import torch

from .errors import UserError

# An offline machine (no route, no DNS) must not stall a run: the weights' host gets this long
# to accept a connection before a download is given up.
CONNECT_TIMEOUT_S = 3.0
HASH_CHUNK_BYTES = 1 << 20


class DownloadError(Exception):
    """The file is not in the cache and could not be downloaded; the message says why."""


def cached_file(url: str) -> Path:
    """Where torch's hub cache keeps the file of `url`: $TORCH_HOME/hub/checkpoints/<name>."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlsplit(url).path).name


def hash_prefix(path: Path) -> str | None:
    """The start of the file's SHA-256 that its name carries, or None when it carries none."""
    found = torch.hub.HASH_REGEX.search(path.name)
    return found.group(1) if found and found.group(1) else None


def sha256(path: Path) -> str:
    """The SHA-256 of a file, read in chunks (ImageNet weights run to gigabytes)."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for chunk in iter(lambda: file.read(HASH_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _first_hop(url: str) -> tuple[str, int]:
    """The host and port a download of `url` connects to: its proxy's, if the environment sets one."""
    parts = urlsplit(url)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(parts.hostname):
        parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)


def host_answers(url: str, timeout: float = CONNECT_TIMEOUT_S) -> bool:
    """True when `url`'s host (or proxy) accepts a TCP connection within `timeout` seconds,
    DNS lookup included."""
    host, port = _first_hop(url)
    answered: list[bool] = []

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            answered.append(True)
        except OSError:
            pass

    # create_connection's timeout does not cover the DNS lookup, which can hang for long
    # offline: wait for the whole attempt in a thread, at most `timeout` seconds.
    attempt = threading.Thread(target=connect, daemon=True)
    attempt.start()
    attempt.join(timeout)
    return bool(answered)


def fetch(url: str) -> Path:
    """The cached file of `url`, downloaded first when it is missing (DownloadError if that fails).

    torch.hub's download writes beside the target and moves the file in only once its SHA-256
    matches the name's prefix: a broken download never lands in the cache.
    """
    target = cached_file(url)
    if target.is_file():
        return target
    if not host_answers(url):
        raise DownloadError(f"{_first_hop(url)[0]} did not answer within {CONNECT_TIMEOUT_S:g} s")
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(url, str(target), hash_prefix(target), progress=True)
    except (OSError, RuntimeError, ValueError) as error:  # URLError is an OSError; hash: Runtime
        raise DownloadError(str(getattr(error, "reason", None) or error).splitlines()[0]) from None
    return target


def unreadable_reason(error: Exception) -> str:
    """Why torch.load(weights_only=True) failed, as a short clause (torch's text runs to
    paragraphs): pickled Python objects, or a damaged file."""
    if isinstance(error, pickle.UnpicklingError) and "GLOBAL" in str(error):
        return "it holds Python objects other than tensors, and loading those could run code"
    return f"it is damaged or was not written by torch.save: {type(error).__name__}"


def load_state_dict(url: str) -> dict[str, torch.Tensor]:
    """The state dict in the cached file of `url` (see fetch), checked against the SHA-256 prefix
    in its name and read with weights_only=True; a file that fails either is a UserError."""
    path = cached_file(url)
    delete = "delete it so that it is downloaded again"
    expected = hash_prefix(path)
    if expected and not sha256(path).startswith(expected):
        raise UserError(
            f"{path} in torch's hub cache is not the file its name promises (its SHA-256 does not "
            f"start with {expected}: cut short, damaged or replaced); {delete}"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a damaged archive, pickled objects: many kinds of error
        raise UserError(
            f"{path} in torch's hub cache cannot be read ({unreadable_reason(error)}); {delete}"
        ) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{path} in torch's hub cache holds no state dict; {delete}")
    return state


@functools.lru_cache(maxsize=1)  # a run may ask for it more than once (preprocessing, weights)
def read_weights_file(path: str) -> tuple[dict[str, torch.Tensor], dict | None]:
    """--pretrained PATH read with weights_only=True: its state dict, and the whole checkpoint
    when it is one of this project (else None); anything else is a UserError.

    Checked when a new run starts, not by the flag's type: a resumed run keeps its --pretrained
    value but never reads the file again, which may be gone by then.
    """
    if not Path(path).is_file():
        raise UserError(
            f"--pretrained {path} is neither none, imagenet nor a file; give the path of a state "
            "dict or of a checkpoint this project wrote"
        )
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a damaged archive, pickled objects: many kinds of error
        raise UserError(
            f"--pretrained {path} could not be read as weights ({unreadable_reason(error)}); "
            "give a file written by torch.save (a state dict, or a checkpoint of this project)"
        ) from None
    if isinstance(loaded, dict) and isinstance(loaded.get("model"), dict):  # a project checkpoint
        # Its average of the weights (--ema) when it kept one: that is what its metrics measured.
        return loaded.get("ema") or loaded["model"], loaded
    if is_state_dict(loaded):
        return loaded, None
    raise UserError(
        f"--pretrained {path} holds no state dict (a dict of tensors) nor a checkpoint of this "
        "project; give one of those"
    )


def is_state_dict(value: object) -> bool:
    """Whether `value` is a non-empty dict of tensors."""
    return (
        isinstance(value, dict)
        and bool(value)
        and all(isinstance(item, torch.Tensor) for item in value.values())
    )


def check_arch(
    path: str, found: str | None, arch: str, loadable: Collection[str] | None = None
) -> None:
    """A UserError when the weights file at `path` records another --arch than `arch` (`found`:
    the one it records, None when it records none). `loadable`: the archs that take
    --pretrained files (None: all), so the sentence suggests switching only to one of them."""
    if found in (None, arch):
        return
    switch = f"add --arch {found}, or " if loadable is None or found in loadable else ""
    raise UserError(
        f"{path} holds weights of --arch {found}, not {arch}; {switch}give weights of {arch}"
    )
