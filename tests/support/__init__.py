"""Helpers the tests share: real servers and process management."""
