"""Notifications: the outbox (rows written with the state change), templates and senders."""
