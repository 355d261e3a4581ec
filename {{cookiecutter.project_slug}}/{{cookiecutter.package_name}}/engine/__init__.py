"""Training helpers: seeding, devices, run folders, checkpoints, timing, optimisation."""
