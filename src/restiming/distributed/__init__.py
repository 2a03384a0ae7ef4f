"""``restiming.distributed``: the bench's load generator on a Ray cluster, for harnesses.

``run(Config(urls=[...], workers=4, rate=2000, duration=30)) -> Summary`` runs what
``restiming bench URL... --ray`` runs (engine actors, start barrier, Arrow batches
with histogram deltas, the same summary, thresholds and exit code) and returns the
summary. Needs the ``restiming[ray]`` extra; importing this module imports neither
Ray nor pyarrow (they are imported when ``run`` is called). SPEC §5 (Scale).
"""

from __future__ import annotations

from ._api import Config, Summary, run

__all__ = ["Config", "Summary", "run"]
