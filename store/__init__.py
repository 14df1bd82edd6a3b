"""Durable history: the call store (SQLite or PostgreSQL: schema, migrations, dialects, the
writer, queries) and what is built from it (transcript exports, the post-call summary). It
knows the event contract (`assist.events`) and nothing of live calls, HTTP or Redis."""
