"""Settings, domain errors whose text is the fix, and terminal-safe text: what every other room uses."""
