"""Training: the one loop (`train.train_and_evaluate`), its jitted step, mesh, checkpoints."""
