"""Built-in data: synthetic clip features, rendered synthetic videos, and synthetic dives with real
FineDiving step timing."""
