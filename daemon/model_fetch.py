"""`npc-voice models fetch`: download a named model into the model cache, verified.

Only this command touches the network; the daemon reads local files (daemon.models).
Each file is checked after download: LFS files (the weights) against the SHA-256 the
hub stores in their LFS pointer, plain git files (configs) against their git blob id,
and both against a pinned SHA-256 where the registry has one. Metadata and downloads
come from one commit (the revision is resolved first), so they describe the same bytes.

Failures end in `FetchError`, whose message is one sentence for the user (no network,
offline mode, missing repository, checksum mismatch, disk full); the CLI prints it and
exits non-zero, with the traceback only in the debug log.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from tqdm import tqdm

from daemon.models import HubModel, hub_model, variant_dir

_LOGGER = logging.getLogger(__name__)

_READ_BYTES = 8 * 1024 * 1024
# Exception classes (by name, in the cause chain) that mean "the hub was not reached":
# huggingface_hub's transport (httpx or requests) and its own wrapper when no local copy
# exists either.
_NETWORK_ERRORS = ("ConnectError", "ConnectionError", "ConnectTimeout", "Timeout",
                   "TimeoutException", "NetworkError", "TransportError",
                   "LocalEntryNotFoundError", "ProxyError")


class FetchError(RuntimeError):
    """A model could not be fetched; the message is one sentence saying why and what to do."""


class _SilentBar(tqdm):
    """A tqdm that draws nothing (huggingface_hub takes a class, not a flag)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs["disable"] = True
        super().__init__(*args, **kwargs)


def fetch(name: str, directory: Path | None = None, progress: bool = True) -> list[Path]:
    """Download model `name` ("qwen2.5-14b" or "qwen2.5-14b:q8_0") into the cache.

    Files already present and verified are not downloaded again.

    Args:
      name: A hub model name (see `daemon.models.HUB_MODELS`), optionally ":<variant>".
      directory: Model cache (default: `daemon.models.models_dir()`).
      progress: Draw download and verification progress bars on stderr.

    Returns:
      The local paths of the model's files, the GGUF first for an LLM.

    Raises:
      FetchError: unknown name, hub unreachable, checksum mismatch, disk error...
    """
    from daemon.models import ModelNotFoundError  # noqa: PLC0415

    try:
        model, variant = hub_model(name)
    except ModelNotFoundError as exc:
        raise FetchError(str(exc)) from None
    try:
        from huggingface_hub import HfApi, hf_hub_download  # noqa: PLC0415
        from huggingface_hub.constants import ENDPOINT  # noqa: PLC0415
        from huggingface_hub.hf_api import RepoFile  # noqa: PLC0415
    except ImportError:
        raise FetchError("fetching models needs huggingface_hub: "
                         "pip install 'npc-voice-bridge[models]'") from None
    folder = variant_dir(model, directory)
    files = model.variants[variant]
    try:
        api = HfApi()
        commit = api.model_info(model.repo_id, revision=model.revision).sha or model.revision
        infos = {info.path: info for info in
                 api.get_paths_info(model.repo_id, list(files), revision=commit)}
        paths = []
        for filename in files:
            info = infos.get(filename)
            if not isinstance(info, RepoFile):
                raise FetchError(f"{model.repo_id} has no file {filename} at revision "
                                 f"{commit[:12]}; the registry in daemon/models.py is out of date")
            lfs_sha256 = info.lfs.sha256 if info.lfs is not None else None
            expected = (lfs_sha256, info.blob_id, model.pinned_sha256.get(filename))
            target = folder / filename
            if not _already_verified(target, expected):
                _LOGGER.info("fetching %s/%s@%s into %s", model.repo_id, filename, commit[:12],
                             folder)
                folder.mkdir(parents=True, exist_ok=True)
                downloaded = hf_hub_download(
                    model.repo_id, filename, revision=commit, local_dir=folder,
                    tqdm_class=None if progress else _SilentBar)
                _verify(Path(str(downloaded)), expected, progress)
            paths.append(target)
        return paths
    except FetchError:
        raise
    except Exception as exc:
        _LOGGER.debug("fetching %s failed", name, exc_info=True)
        raise FetchError(_describe(exc, model, folder, ENDPOINT)) from exc


def _marker(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def _already_verified(path: Path, expected: tuple[str | None, str, str | None]) -> bool:
    """True if `path` was verified against the same checksums by an earlier fetch."""
    marker = _marker(path)
    return path.is_file() and marker.is_file() and marker.read_text().split() == [
        value or "-" for value in expected]


def _verify(path: Path, expected: tuple[str | None, str, str | None], progress: bool) -> None:
    """Hash `path` and compare; on a mismatch the file is deleted.

    Args:
      path: The downloaded file.
      expected: (LFS SHA-256 or None, git blob id, pinned SHA-256 or None).
      progress: Show a progress bar while hashing.

    Raises:
      FetchError: a checksum differs.
    """
    lfs_sha256, blob_id, pinned = expected
    sha256 = hashlib.sha256()
    size = path.stat().st_size
    git_blob = hashlib.sha1(f"blob {size}\0".encode())
    with path.open("rb") as handle, tqdm(total=size, unit="B", unit_scale=True,
                                         desc=f"verifying {path.name}",
                                         disable=not progress) as bar:
        while chunk := handle.read(_READ_BYTES):
            sha256.update(chunk)
            if lfs_sha256 is None:
                git_blob.update(chunk)
            bar.update(len(chunk))
    checks = [("the hub's SHA-256", lfs_sha256, sha256.hexdigest()),
              ("the pinned SHA-256", pinned, sha256.hexdigest())]
    if lfs_sha256 is None:
        checks.append(("the hub's git blob id", blob_id, git_blob.hexdigest()))
    for what, want, got in checks:
        if want is not None and want != got:
            path.unlink(missing_ok=True)
            raise FetchError(f"{path.name} does not match {what} ({got[:12]}... instead of "
                             f"{want[:12]}...): the download was deleted; fetch it again")
    _marker(path).write_text(" ".join(value or "-" for value in expected) + "\n")
    _LOGGER.info("verified %s (sha256 %s)", path.name, sha256.hexdigest())


def _cause_chain(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _describe(exc: Exception, model: HubModel, folder: Path, hub_url: str) -> str:
    """One sentence for the user about why fetching `model` failed."""
    from huggingface_hub import errors  # noqa: PLC0415

    chain = _cause_chain(exc)
    if any(isinstance(e, errors.OfflineModeIsEnabled) for e in chain):
        return (f"cannot fetch {model.name}: huggingface_hub is in offline mode "
                f"(HF_HUB_OFFLINE is set); unset it, or copy the files into {folder}")
    if any(isinstance(e, errors.GatedRepoError) for e in chain):
        return (f"cannot fetch {model.name}: {model.repo_id} is gated; accept its terms on "
                "the Hugging Face website and log in with `hf auth login`")
    if any(isinstance(e, (errors.RepositoryNotFoundError, errors.RevisionNotFoundError,
                          errors.EntryNotFoundError)) for e in chain):
        return (f"cannot fetch {model.name}: {model.repo_id}@{model.revision} was not found "
                f"on {hub_url}")
    names = {cls.__name__ for e in chain for cls in type(e).__mro__}
    if names & set(_NETWORK_ERRORS):
        reason = str(chain[-1]).strip().rstrip(".") or type(chain[-1]).__name__
        return (f"cannot reach the Hugging Face Hub at {hub_url} to fetch {model.name} "
                f"({reason}); check the network connection (or HF_ENDPOINT), or copy the "
                f"files of {model.repo_id} into {folder} by hand")
    if any(isinstance(e, errors.HfHubHTTPError) for e in chain):
        return f"the Hugging Face Hub refused to send {model.name}: {str(exc).splitlines()[0]}"
    os_error = next((e for e in chain if isinstance(e, OSError)), None)
    if os_error is not None:
        return (f"cannot write {model.name} into {folder}: "
                f"{os_error.strerror or os_error}")
    return f"fetching {model.name} failed: {type(exc).__name__}: {str(exc).splitlines()[0]}"
