"""Operator features: who may use them, the users list, usage analytics across users."""
