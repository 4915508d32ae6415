"""The local Alpaca venue."""
