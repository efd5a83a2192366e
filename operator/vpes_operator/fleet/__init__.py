"""Fleet upgrades: move servers to a new tenant image in waves, behind a health gate."""
