from shared.models.base import Base
from shared.models.chat import Chat, Message, ReplyStatus, SystemPrompt
from shared.models.provider import ProviderConfigRow, ProviderModel, ProviderUsage
from shared.models.user import ApiKey, User

__all__ = [
    "ApiKey",
    "Base",
    "Chat",
    "Message",
    "ProviderConfigRow",
    "ProviderModel",
    "ProviderUsage",
    "ReplyStatus",
    "SystemPrompt",
    "User",
]
