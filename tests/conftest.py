"""Shared pytest configuration: the test peers and the engine runner fixtures."""

pytest_plugins = ["tests.peers.fixtures", "tests.engine_support"]
