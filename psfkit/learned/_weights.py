"""Loading bundled network weights safely (weights_only + SHA-256 check)."""

import functools
import hashlib
import json
from pathlib import Path

WEIGHTS_DIR = Path(__file__).parent / "weights"


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def model_card(name):
    """The model card (JSON) bundled next to the weights ``name``."""
    path = WEIGHTS_DIR / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(f"no bundled model card {path.name}; is psfkit installed with its package data?")
    return json.loads(path.read_text())


# bundled network name -> (module, class) that builds it
_ARCHITECTURES = {
    "identifier": ("identifier_net", "IdentifierNet"),
    "mtf": ("mtf_net", "MTFNet"),
    "unrolled": ("unrolled_net", "UnrolledDeblur"),
}


@functools.lru_cache(maxsize=8)
def bundled_network(name, device_name):
    """The bundled network ``name`` with its verified weights, in eval mode on ``device_name`` (cached)."""
    import importlib

    module, cls = _ARCHITECTURES[name]
    net = getattr(importlib.import_module(f"psfkit.learned.{module}"), cls)()
    net.load_state_dict(load_state_dict(name))
    return net.eval().to(device_name)


@functools.lru_cache(maxsize=8)
def load_state_dict(name):
    """State dict of the bundled network ``name``, verified against its model card."""
    import torch

    path = WEIGHTS_DIR / f"{name}.pt"
    card = model_card(name)
    if not path.exists():
        raise FileNotFoundError(f"bundled weights {path} are missing; reinstall psfkit")
    actual = sha256(path)
    if actual != card["sha256"]:
        raise RuntimeError(f"{path.name}: SHA-256 {actual} does not match the model card ({card['sha256']})")
    return torch.load(path, map_location="cpu", weights_only=True)


def resolve_device(device):
    """The torch device for ``device`` (None: CUDA when available), validated."""
    import torch

    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"device must be None, 'cpu', 'cuda' or a torch device, got {device!r}") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was requested but CUDA is not available")
    return device
