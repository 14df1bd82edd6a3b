"""Several nodes as one service on Redis: this node's outbox of events, the call registry
and the reaper of dead nodes' calls, mirrors of other nodes' calls for screens here, and the
inbox of feedback for calls that run elsewhere (`cluster.node`)."""
