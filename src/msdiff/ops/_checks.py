"""Input checks that name the op. Evaluated on static shapes, so they also work under jit."""


def check(ok: bool, op: str, message: str) -> None:
    """Raise ValueError('op: message') unless ok."""
    if not ok:
        raise ValueError(f"{op}: {message}")
