"""b24recover: account recovery for on-premise Bitrix24 user stores."""

__version__ = "0.1.0"
