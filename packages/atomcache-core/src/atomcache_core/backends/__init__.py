"""Storage, lock and notifier implementations."""
