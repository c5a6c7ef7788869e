"""Shared fixtures: synthetic frames with truth, made once per session."""

import pytest

from stdpipe_ccd import datasets, make_mask

SHAPE = (1024, 1024)


@pytest.fixture(scope="session")
def frame():
    """A 1024 x 1024 light frame with every kind of defect, and its truth."""
    return datasets.make_frame(SHAPE, seed=1)


@pytest.fixture(scope="session")
def dark():
    return datasets.make_dark(SHAPE)


@pytest.fixture(scope="session")
def flat():
    return datasets.make_flat(SHAPE)


@pytest.fixture(scope="session")
def masked(frame, dark, flat):
    """``frame`` masked for every reason."""
    return make_mask(frame.ccd, mask_bleed=True, mask_cosmics=True, dark=dark, flat=flat)
