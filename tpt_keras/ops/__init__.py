"""Pure maths of the method: losses, group-aware intervals, metrics, the parsing metric."""
