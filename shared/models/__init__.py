from shared.models.base import Base
from shared.models.chat import Chat, Message, ReplyStatus, SystemPrompt
from shared.models.provider import ProviderCatalog, ProviderConfigRow, ProviderModel, ProviderUsage
from shared.models.routing import Experiment, FallbackChain, PoolDeployment
from shared.models.usage_rollup import UsageRollupDaily, UsageRollupHourly, UsageRollupState
from shared.models.user import ApiKey, User

__all__ = [
    "ApiKey",
    "Base",
    "Chat",
    "Experiment",
    "FallbackChain",
    "Message",
    "PoolDeployment",
    "ProviderCatalog",
    "ProviderConfigRow",
    "ProviderModel",
    "ProviderUsage",
    "ReplyStatus",
    "SystemPrompt",
    "UsageRollupDaily",
    "UsageRollupHourly",
    "UsageRollupState",
    "User",
]
