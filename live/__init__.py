"""One node's live calls, asyncio only, no HTTP: the call session (audio in, events out), the
event hub (stamps, keeps and fans out each call's events), the assist worker, recording and
metrics, and `Services`, what all calls on this node share."""
