"""The fetch engine: client → pool → HTTP/1.1 connection → socket layer."""

from ._client import Client
from ._config import Limits, Timeout
from ._dns import CachingResolver
from ._models import Headers, Response, StreamResponse

__all__ = ["Client", "Limits", "Timeout", "CachingResolver", "Headers", "Response", "StreamResponse"]
