"""The test command's ``--dist loadgroup`` really groups ``xdist_group`` tests on one worker.

Costly session fixtures (the tiny world, the store history) are built once per worker; the
groups keep their tests on one worker, so each is built once. pytest 9.2 with pytest-xdist 3.8
silently stopped grouping (xdist suffixes the nodeid with ``@group``, which 9.2 ignores), and
CI built the tiny world twice. pyproject.toml keeps pytest below 9.2; this test fails if a
release breaks it again.
"""

from __future__ import annotations

import pytest


@pytest.mark.xdist_group("grouping_check")
def test_a_grouped_test_carries_its_group_when_the_run_groups(request):
    grouping = getattr(request.config.option, "loadgroup", False)  # set on each worker of --dist loadgroup
    if not grouping:
        assert "@" not in request.node.nodeid  # not grouping (no xdist, or another --dist): the plain id
        return
    assert request.node.nodeid.endswith("@grouping_check"), request.node.nodeid
