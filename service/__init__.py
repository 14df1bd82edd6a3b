"""The service: settings (each declared once, with its environment variable and check) and
the node that wires the parts together (`node.load_services`: models, store, hub or cluster,
recognition scheduler, revision)."""
