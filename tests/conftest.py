"""Shared test set-up: blocking kernel launch so errors surface at the op that caused them."""
import mindspore as ms
import pytest


@pytest.fixture(autouse=True, scope="session")
def _launch_blocking():
    ms.runtime.launch_blocking()
    yield
