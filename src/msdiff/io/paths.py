"""Turn a local folder or a hub repo id into a folder on disk, offline (huggingface_hub cache only)."""
import os
import re
from pathlib import Path

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")
_HUB_REPO_FOLDER = re.compile(r"^(models|datasets|spaces)--.+")
_PLAIN_RULE = "a plain name inside the model folder (no '/', '\\', '..' or absolute path)"


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


def is_plain_name(name) -> bool:
    """True for a file or folder name that stays in its folder: a string without separators, not '.' or '..'."""
    return (isinstance(name, str) and name not in ("", ".", "..")
            and not any(c in name for c in ("/", "\\", "\0")))


def check_plain_name(name, where: "str | os.PathLike", what: str) -> str:
    """`name` if it is a plain name; else LoadError naming the file `where` and the entry `what`."""
    if not is_plain_name(name):
        raise LoadError(f"{where}: {what} {name!r} is not {_PLAIN_RULE}; refusing to read outside the model")
    return name


def trust_root(folder: "str | os.PathLike") -> Path:
    """The folder whose files msdiff may read for `folder`: its hub-cache repo folder (models--org--name, whose
    snapshots link into ../../blobs) when `folder` lies in a snapshot, else `folder` itself (symlinks followed)."""
    real = Path(folder).resolve()
    for p in (real, *real.parents):
        repo = p.parent.parent
        if p.parent.name == "snapshots" and _HUB_REPO_FOLDER.match(repo.name) and (repo / "blobs").is_dir():
            return repo
    return real


def confined(path: "str | os.PathLike", root: "str | os.PathLike") -> Path:
    """`path` if it (with symlinks followed) lies inside `root`; else LoadError naming both."""
    path, root = Path(path), Path(root).resolve()
    real = path.resolve()
    if real != root and root not in real.parents:
        raise LoadError(f"{path} resolves to {real}, outside the model folder {root}; msdiff reads only files "
                        f"inside the model folder (a hub snapshot may link into its repo's blobs/)")
    return path


def confined_folder(folder: Path, root: Path) -> Path:
    """`folder` if it and every entry directly in it resolve inside `root` (see `confined`)."""
    confined(folder, root)
    for entry in sorted(folder.iterdir()):
        confined(entry, root)
    return folder


def _check_snapshot(snapshot: Path, cache: Path, repo_id: str, revision: "str | None") -> Path:
    """The snapshot folder huggingface_hub found, if it is a plain snapshots/<rev> of the repo's cache folder."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    ref = repo / "refs" / (revision or "main")
    if snapshot.parent != repo / "snapshots" or not is_plain_name(snapshot.name):
        where = ref if ref.is_file() else repo
        raise LoadError(f"{where}: revision {revision or 'main'!r} leads to {str(snapshot)!r}, which is not a "
                        f"folder in {repo / 'snapshots'}; refusing to read outside the hub cache")
    return confined(snapshot, repo)


def _from_hub_cache(repo_id: str, revision: "str | None") -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    cache = hub_cache_dir()
    try:
        snapshot = Path(snapshot_download(repo_id, revision=revision, cache_dir=cache, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError) as e:
        offline = " (HF_HUB_OFFLINE is set)" if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0") else ""
        raise CheckpointNotFoundError(
            f"{repo_id!r} is neither a local folder nor in the huggingface_hub cache at {cache}{offline}. "
            f"msdiff never downloads; fetch it first, e.g. `hf download {repo_id}` "
            f"(or `huggingface-cli download {repo_id}`), or "
            f"`huggingface_hub.snapshot_download({repo_id!r})` in Python, then load again.") from e
    return _check_snapshot(snapshot, cache, repo_id, revision)


def resolve_folder(path_or_repo_id: "str | os.PathLike", subfolder: "str | None" = None,
                   revision: "str | None" = None) -> Path:
    """Local folder, or hub repo id in the local cache -> existing folder (joined with subfolder, which must stay
    inside it: see `trust_root`)."""
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
    if not subfolder:
        return root
    folder = root / subfolder
    if Path(subfolder).is_absolute() or ".." in Path(subfolder).parts:
        raise LoadError(f"subfolder {subfolder!r} of {root} is not {_PLAIN_RULE}")
    if not folder.is_dir():
        raise CheckpointNotFoundError(f"subfolder {subfolder!r} not found in {root}")
    return confined(folder, trust_root(root))
