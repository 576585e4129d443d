"""Services: load, decide (with the pure domain), commit. They take ``now`` and a session."""
