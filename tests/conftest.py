import compile_lock
import numpy as np
import pytest

compile_lock.install()


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
