"""Turn a local folder or a hub repo id into a folder on disk, offline (huggingface_hub cache only)."""
import os
import re
from pathlib import Path

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


class LoadError(ValueError):
    """A checkpoint that msdiff cannot load exactly: the message says what and where."""


class CheckpointNotFoundError(LoadError, FileNotFoundError):
    """A folder, config or weight file that is not on disk."""


def hub_cache_dir() -> Path:
    """The huggingface_hub cache folder, read from the environment at call time."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def _from_hub_cache(repo_id: str, revision: "str | None") -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    cache = hub_cache_dir()
    try:
        return Path(snapshot_download(repo_id, revision=revision, cache_dir=cache, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError) as e:
        offline = " (HF_HUB_OFFLINE is set)" if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0") else ""
        raise CheckpointNotFoundError(
            f"{repo_id!r} is neither a local folder nor in the huggingface_hub cache at {cache}{offline}. "
            f"msdiff never downloads; fetch it first, e.g. `hf download {repo_id}` "
            f"(or `huggingface-cli download {repo_id}`), or "
            f"`huggingface_hub.snapshot_download({repo_id!r})` in Python, then load again.") from e


def resolve_folder(path_or_repo_id: "str | os.PathLike", subfolder: "str | None" = None,
                   revision: "str | None" = None) -> Path:
    """Local folder, or hub repo id in the local cache -> existing folder (joined with subfolder)."""
    path = Path(path_or_repo_id).expanduser()
    if path.is_dir():
        root = path
    elif path.exists():
        raise LoadError(f"{path} is a file; msdiff loads diffusers-layout folders (config.json + "
                        f"*.safetensors), not single-file checkpoints")
    elif isinstance(path_or_repo_id, str) and _REPO_ID.match(path_or_repo_id):
        root = _from_hub_cache(path_or_repo_id, revision)
    else:
        raise CheckpointNotFoundError(f"folder {path} does not exist (and is not a hub repo id 'org/name')")
    folder = root / subfolder if subfolder else root
    if not folder.is_dir():
        raise CheckpointNotFoundError(f"subfolder {subfolder!r} not found in {root}")
    return folder
