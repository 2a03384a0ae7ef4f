"""Bridges from the HTTP clients and tools people already use to restiming's timeline.

Each adapter is its own module with its own optional extra and is imported only by
name (``restiming.adapters.httpx`` needs ``restiming[httpx]``, ``.aiohttp`` needs
``restiming[aiohttp]``, ``.otel`` needs ``restiming[otel]``); ``import restiming`` and
``import restiming.adapters`` import none of those packages.
"""

__all__: list[str] = []
