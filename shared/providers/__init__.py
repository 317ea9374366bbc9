"""The provider layer: one synchronous interface, adapters loaded from entry points.

Import adapters through `provider_manager`, not directly: that keeps SDK imports lazy and lets
plugins replace or add providers.
"""

from shared.providers.base import (
    BaseProvider,
    ChatResponse,
    Message,
    ProviderConfig,
    StreamEnd,
    StreamEvent,
    TextDelta,
    Usage,
    estimate_prompt_tokens,
    estimate_tokens,
)
from shared.providers.catalog import provider_configs
from shared.providers.errors import (
    ContextTooLong,
    InvalidModel,
    ProviderAuthenticationError,
    ProviderBadRequest,
    ProviderError,
    ProviderQuotaExceeded,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
    StreamInterrupted,
)
from shared.providers.manager import ProviderManager, UnknownProvider, provider_manager

__all__ = [
    "BaseProvider",
    "ChatResponse",
    "ContextTooLong",
    "InvalidModel",
    "Message",
    "ProviderAuthenticationError",
    "ProviderBadRequest",
    "ProviderConfig",
    "ProviderError",
    "ProviderManager",
    "ProviderQuotaExceeded",
    "ProviderRateLimited",
    "ProviderTimeout",
    "ProviderUnavailable",
    "StreamEnd",
    "StreamEvent",
    "StreamInterrupted",
    "TextDelta",
    "UnknownProvider",
    "Usage",
    "estimate_prompt_tokens",
    "estimate_tokens",
    "provider_configs",
    "provider_manager",
]
