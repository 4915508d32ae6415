"""Broker adapter: Alpaca Trading API v2."""
