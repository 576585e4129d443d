"""The scheduler: the beat schedule and the sweep that finds and claims due work."""
