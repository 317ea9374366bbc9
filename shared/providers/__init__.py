"""The provider layer: one synchronous interface, adapters loaded from entry points.

Import adapters through `provider_manager`, not directly: that keeps SDK imports lazy and lets
plugins replace or add providers.
"""

from shared.providers.base import (
    BaseProvider,
    ChatResponse,
    Message,
    ProviderConfig,
    RateLimitReport,
    StreamEnd,
    StreamEvent,
    TextDelta,
    Usage,
    UsageReport,
    estimate_prompt_tokens,
    estimate_tokens,
    merge_usage,
)
from shared.providers.catalog import provider_configs
from shared.providers.errors import (
    ContextTooLong,
    InvalidModel,
    MalformedChunk,
    ProviderAuthenticationError,
    ProviderBadRequest,
    ProviderError,
    ProviderQuotaExceeded,
    ProviderRateLimited,
    ProviderRedirectRefused,
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
    "MalformedChunk",
    "Message",
    "ProviderAuthenticationError",
    "ProviderBadRequest",
    "ProviderConfig",
    "ProviderError",
    "ProviderManager",
    "ProviderQuotaExceeded",
    "ProviderRateLimited",
    "ProviderRedirectRefused",
    "ProviderTimeout",
    "ProviderUnavailable",
    "RateLimitReport",
    "StreamEnd",
    "StreamEvent",
    "StreamInterrupted",
    "TextDelta",
    "UnknownProvider",
    "Usage",
    "UsageReport",
    "estimate_prompt_tokens",
    "estimate_tokens",
    "merge_usage",
    "provider_configs",
    "provider_manager",
]
