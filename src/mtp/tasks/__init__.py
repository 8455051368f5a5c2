"""LightningModules per task and the optimiser recipes they share."""
