"""Tornado handlers: authorize, parse, call a service, serialize."""
