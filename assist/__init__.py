"""Per-call orchestration and product logic: events, sessions, the event hub, settings."""
