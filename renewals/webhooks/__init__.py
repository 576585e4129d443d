"""The FastStar webhook receiver: verify, store once, hand to a task, answer at once."""
