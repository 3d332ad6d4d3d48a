"""The Mininet emulator of fl-crb (not built yet: see `fl-crb emulate`)."""
