"""Training and data: data set loaders, training with the A2Q regularizer, checkpoints."""
