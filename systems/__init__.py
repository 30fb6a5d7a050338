"""The connected external systems as the hub is configured with them (the systems file's schema).

    from systems import SystemConfig, ChannelConfig

`hub.systems.load_systems` reads the file into these models; see `systems.schema`.
"""

from systems.schema import (
    CLOUDEVENT,
    DEFAULT_DELIVERY_CONCURRENCY,
    INBOUND_KINDS,
    OPTIONS_CHECK,
    SENDER_KINDS,
    AdapterKind,
    AuthConfig,
    ChannelConfig,
    CollaborationConfig,
    DepartmentConfig,
    OptionsCheck,
    OutboundBatch,
    OutboundConfig,
    RateLimit,
    ReferenceConfig,
    RetryPolicy,
    SecretNotSet,
    SystemConfig,
)

__all__ = [
    "CLOUDEVENT",
    "DEFAULT_DELIVERY_CONCURRENCY",
    "INBOUND_KINDS",
    "OPTIONS_CHECK",
    "SENDER_KINDS",
    "AdapterKind",
    "AuthConfig",
    "ChannelConfig",
    "CollaborationConfig",
    "DepartmentConfig",
    "OptionsCheck",
    "OutboundBatch",
    "OutboundConfig",
    "RateLimit",
    "ReferenceConfig",
    "RetryPolicy",
    "SecretNotSet",
    "SystemConfig",
]
