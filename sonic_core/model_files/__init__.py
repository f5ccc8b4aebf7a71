"""The Sonic engine's weight files: one manifest (manifest.py), a verified, resumable HTTP fetch (fetch.py) and the
`sonicflow models download|check` commands (commands.py). Nothing here imports torch."""
