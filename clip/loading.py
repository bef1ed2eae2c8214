"""Official model table, verified download into the cache, and checkpoint files -> state_dict.

Cache folder: ``download_root`` if given, else ``$CLIP_CACHE_DIR``, else ``~/.cache/clip``. A download is written
through ``fileio.atomic_write`` and keeps its final name only once its SHA256 matched, so an interrupted or
damaged transfer never looks like a cached model. Files of the Hugging Face Hub (OpenCLIP and Hugging Face
checkpoints) go through ``huggingface_hub``, whose cache is atomic too and keyed by commit (:func:`hub_download`).
A loader of a checkpoint family returns a :class:`Checkpoint`: the weights in OpenAI's layout plus what the
tensors cannot say (the choices of ``clip.model.build_model``, the image preprocessing).
"""
from __future__ import annotations

import hashlib
import http.client
import logging
import os
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union

import torch
from tqdm import tqdm

from fileio import atomic_write

from .model import METADATA_KEYS, CheckpointError

logger = logging.getLogger(__name__)

CACHE_ENV = "CLIP_CACHE_DIR"
_BASE = "https://openaipublic.azureedge.net/clip/models"
# name -> URL; the second-to-last path segment of each URL is the file's SHA256.
MODEL_URLS: Dict[str, str] = {
    "RN50": f"{_BASE}/afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762/RN50.pt",
    "RN101": f"{_BASE}/8fa8567bab74a42d41c5915025a8e4538c3bdbe8804a470a72f30b0d94fab599/RN101.pt",
    "RN50x4": f"{_BASE}/7e526bd135e493cef0776de27d5f42653e6b4c8bf9e0f653bb11773263205fdd/RN50x4.pt",
    "RN50x16": f"{_BASE}/52378b407f34354e150460fe41077663dd5b39c54cd0bfd2b27167a4a06ec9aa/RN50x16.pt",
    "RN50x64": f"{_BASE}/be1cfb55d75a9666199fb2206c106743da0f6468c9d327f3e0d0a543a9919d9c/RN50x64.pt",
    "ViT-B/32": f"{_BASE}/40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt",
    "ViT-B/16": f"{_BASE}/5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f/ViT-B-16.pt",
    "ViT-L/14": f"{_BASE}/b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836/ViT-L-14.pt",
    "ViT-L/14@336px": f"{_BASE}/3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02/ViT-L-14-336px.pt",
}

_CHUNK = 1 << 16
_TIMEOUT_S = 60

# Per-channel statistics of the images OpenAI's CLIP was trained on (also most OpenCLIP models').
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
INTERPOLATIONS = ("bicubic", "bilinear", "nearest")
RESIZE_MODES = ("shortest", "squash")


@dataclass(frozen=True)
class Preprocess:
    """How a checkpoint's images are prepared, from its own config (defaults: OpenAI's).

    resize_mode: ``shortest`` resizes the shorter side to the resolution then centre-crops; ``squash`` resizes
    both sides to the resolution (the aspect ratio is not kept).
    """

    mean: Tuple[float, ...] = CLIP_MEAN
    std: Tuple[float, ...] = CLIP_STD
    interpolation: str = "bicubic"
    resize_mode: str = "shortest"

    def __post_init__(self) -> None:
        if self.interpolation not in INTERPOLATIONS or self.resize_mode not in RESIZE_MODES:
            raise CheckpointError(f"image preprocessing {self.interpolation!r} / {self.resize_mode!r}: supported "
                                  f"are interpolations {INTERPOLATIONS} and resize modes {RESIZE_MODES}")


@dataclass
class Checkpoint:
    """A checkpoint converted for ``clip.model.build_model``.

    state_dict: the weights in OpenAI's layout; choices: ``build_model``'s ``choices`` (what the tensors cannot
    show); family: ``openai`` | ``openclip`` | ``hf``; source: the file or name, for messages.
    """

    state_dict: Dict[str, torch.Tensor]
    source: str
    family: str = "openai"
    choices: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    preprocess: Preprocess = Preprocess()


def cache_dir(download_root: Optional[Union[str, os.PathLike]] = None) -> Path:
    """The folder downloaded models are cached in (see the module docstring)."""
    if download_root:
        return Path(download_root).expanduser()
    return Path(os.environ.get(CACHE_ENV) or "~/.cache/clip").expanduser()


def sha256_of(path: Union[str, os.PathLike]) -> str:
    """Hex SHA256 of a file, read in chunks (model files are up to ~900 MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch(url: str, destination: str, expected_sha256: str, name: str) -> None:
    """Stream ``url`` into ``destination``, hashing on the way; RuntimeError if the digest is not the expected one."""
    digest = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as source, open(destination, "wb") as out:
        size = source.headers.get("Content-Length")
        with tqdm(total=int(size) if size else None, unit="iB", unit_scale=True, unit_divisor=1024, desc=name,
                  ncols=80) as progress:
            for chunk in iter(lambda: source.read(_CHUNK), b""):
                out.write(chunk)
                digest.update(chunk)
                progress.update(len(chunk))
    if digest.hexdigest() != expected_sha256:
        raise RuntimeError(f"the bytes received from {url} have SHA256 {digest.hexdigest()}, not the published "
                           f"{expected_sha256}: the transfer was damaged or the file changed; nothing was kept")


def download(url: str, root: Union[str, os.PathLike], expected_sha256: Optional[str] = None) -> str:
    """The local path of ``url``'s file in the cache folder ``root``, fetched first unless a verified copy is there.

    Args:
        url: the file's address; its last path segment names the cached file.
        root: the cache folder (created if needed).
        expected_sha256: hex digest; default: the URL's second-to-last path segment (how OpenAI publishes them).
    Raises:
        RuntimeError: the transfer failed or its checksum did not match (the message names the address and where
            to put a copy fetched by other means). Only verified bytes ever get the final name.
    """
    expected = (expected_sha256 or url.rstrip("/").split("/")[-2]).lower()
    target = Path(root).expanduser() / os.path.basename(url)
    if target.exists() and not target.is_file():
        raise RuntimeError(f"cannot cache {url}: {target} is in the way and is not a file; move it aside")
    if target.is_file():
        if sha256_of(target) == expected:
            return str(target)
        logger.warning("The cached %s is damaged or outdated (its SHA256 is not %s): fetching it again", target,
                       expected)
    try:
        atomic_write(target, lambda temp: _fetch(url, temp, expected, target.name))
    except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
        raise RuntimeError(f"could not fetch {url} ({err}). Offline, get the file on another machine and copy it "
                           f"to {target} (its SHA256 must be {expected}).") from err
    return str(target)


def resolve_model_path(name_or_path: Union[str, os.PathLike], download_root: Optional[str] = None) -> str:
    """A name of ``MODEL_URLS`` (fetched into the cache) or the path of an existing file -> a local file path."""
    name_or_path = os.fspath(name_or_path)
    if name_or_path in MODEL_URLS:
        return download(MODEL_URLS[name_or_path], cache_dir(download_root))
    if os.path.isfile(name_or_path):
        return name_or_path
    raise FileNotFoundError(
        f"CLIP weights {name_or_path!r}: not one of the released models ({', '.join(MODEL_URLS)}), so it was "
        f"taken as a file path, and no file is there. Check the spelling of MODEL.BACKBONE.NAME, or point "
        f"MODEL.BACKBONE.PATH at a local checkpoint.")


def openai_checkpoint(name_or_path: Union[str, os.PathLike], download_root: Optional[str] = None) -> Checkpoint:
    """An OpenAI release (by name, fetched into the cache) or an OpenAI-layout file, as a :class:`Checkpoint`."""
    path = resolve_model_path(name_or_path, download_root)
    return Checkpoint(read_state_dict(path), source=str(path))


def hub_download(repo_id: str, filenames: Sequence[str], revision: Optional[str] = None,
                 cache_dir: Optional[str] = None, required: bool = True) -> Optional[str]:
    """The local copy of the first of ``filenames`` that Hugging Face Hub repository ``repo_id`` holds.

    Fetched through ``huggingface_hub`` into its cache (``cache_dir``, else its default, ``$HF_HUB_CACHE``): the
    library writes to a temp file and renames it when complete, and keys files by commit. ``revision`` (a commit
    SHA, branch or tag) pins the version; ``$HF_ENDPOINT`` names a mirror (read at each call); ``HF_HUB_OFFLINE=1``
    uses the cache only.

    Raises:
        ImportError: ``huggingface_hub`` is not installed.
        FileNotFoundError: ``required`` and the repository has none of ``filenames``.
        RuntimeError: the repository, revision or server could not be reached (the message says how to work offline).
    """
    try:
        import huggingface_hub
        from huggingface_hub.errors import LocalEntryNotFoundError, RemoteEntryNotFoundError
    except ImportError as err:
        raise ImportError(f"downloading {repo_id} needs huggingface_hub: pip install -r requirements.txt") from err
    for filename in filenames:
        try:
            path = huggingface_hub.hf_hub_download(repo_id, filename, revision=revision, cache_dir=cache_dir,
                                                   endpoint=os.environ.get("HF_ENDPOINT") or None)
        except RemoteEntryNotFoundError:
            continue
        except LocalEntryNotFoundError as err:
            if required:  # offline (or unreachable) and not in the cache
                raise RuntimeError(f"{filename} of {repo_id} is not in the Hugging Face cache and the Hub cannot be "
                                   f"reached ({str(err).splitlines()[0]}); set MODEL.BACKBONE.PATH to a local copy"
                                   ) from err
            logger.warning("%s/%s: not in the cache and the Hub cannot be reached; going without it", repo_id,
                           filename)
            continue
        except (OSError, ValueError) as err:  # HTTP and connection errors of huggingface_hub are OSErrors
            raise RuntimeError(
                f"could not fetch {filename} of {repo_id}{'@' + revision if revision else ''} from the Hugging Face "
                f"Hub ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}). Offline: download the "
                f"repository's files on another machine and point MODEL.BACKBONE.PATH at that folder") from err
        logger.info("%s/%s: %s", repo_id, filename, path)
        return path
    if required:
        raise FileNotFoundError(f"the Hugging Face Hub repository {repo_id} has none of {list(filenames)}")
    return None


def read_state_dict(path: Union[str, os.PathLike], unwrap: Optional[Callable[[Any], Any]] = None,
                    torchscript: bool = True) -> Dict[str, torch.Tensor]:
    """Weights of a CLIP file: an OpenAI TorchScript archive, a ``torch.save``'d state_dict or a safetensors file.

    Args:
        path: the file.
        unwrap: applied to what the file holds before it is checked (a family's container layout, e.g. a
            training checkpoint's ``state_dict`` entry).
        torchscript: try the file as a TorchScript archive first (OpenAI's releases are); False for the other
            families, whose files are only ever read as tensors (safetensors, or ``torch.load(weights_only=True)``).
    Raises:
        CheckpointError: the file is none of these, or does not hold a ``{name: tensor}`` mapping.
    """
    if str(path).endswith(".safetensors"):
        state_dict = _read_safetensors(path)
    else:
        state_dict = _read_torch_file(path, torchscript)
    if unwrap is not None:
        state_dict = unwrap(state_dict)
    if not isinstance(state_dict, dict):
        raise CheckpointError(f"{path} holds a {type(state_dict).__name__}, not a CLIP state_dict {{name: tensor}}")
    others = [k for k, v in state_dict.items() if not isinstance(v, torch.Tensor)]
    if others:
        raise CheckpointError(
            f"{path} is not a CLIP state_dict: entries {others[:5]} are not tensors (a training checkpoint? an "
            f"OpenCLIP one loads with MODEL.BACKBONE.NAME openclip:ARCH naming its architecture; a prompt learner's "
            f"is loaded elsewhere, e.g. --model-dir or MODEL.INIT_WEIGHTS)"
        )
    logger.debug("read %d tensors from %s (metadata keys present: %s)", len(state_dict), path,
                 [k for k in METADATA_KEYS if k in state_dict])
    return dict(state_dict)


def _read_safetensors(path: Union[str, os.PathLike]) -> Dict[str, torch.Tensor]:
    try:
        from safetensors import SafetensorError
        from safetensors.torch import load_file
    except ImportError as err:
        raise ImportError(f"reading {path} needs safetensors: pip install -r requirements.txt") from err
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{path} is not a readable safetensors file ({err}); get the file again") from None


def _read_torch_file(path: Union[str, os.PathLike], torchscript: bool = True) -> Any:
    """What a TorchScript archive (its state_dict; only if ``torchscript``) or a ``torch.save``'d file (read with
    weights_only) holds."""
    try:
        if not torchscript:
            raise RuntimeError("not tried (files of this family are read as tensors only)")
        with warnings.catch_warnings():
            # torch.jit.load is deprecated, but the official model files are TorchScript archives
            warnings.simplefilter("ignore", FutureWarning)
            archive = torch.jit.load(str(path), map_location="cpu")
        state_dict = archive.state_dict()
    except RuntimeError as jit_err:
        try:
            state_dict = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as err:  # pickle / zip errors come in many types; all mean "not a checkpoint"
            raise CheckpointError(
                f"{path} is neither a TorchScript archive nor a torch.save'd state_dict "
                f"(TorchScript: {str(jit_err).splitlines()[0]}; torch.load: {type(err).__name__}: "
                f"{str(err).splitlines()[0] if str(err) else ''}). The file is damaged or not CLIP weights: a "
                f"download cached by name is fetched again once you delete it; otherwise get the file again"
            ) from None
    return state_dict
