"""Shared test set-up: blocking kernel launch so errors surface at the op that caused them, and PyNative as the
default mode of recipe calls that do not name one (parity is checked in PyNative; graph-mode cases say
mode="graph", and the support matrix runs every row in both). msdiff's own default is graph
(tests/test_settings.py checks it)."""
import mindspore as ms
import pytest

from msdiff import settings


@pytest.fixture(autouse=True, scope="session")
def _launch_blocking():
    ms.runtime.launch_blocking()
    settings.set_default_mode("pynative")
    yield
    settings.set_default_mode(None)
