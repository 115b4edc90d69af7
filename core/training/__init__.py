"""Training, after the model: the loop, its checkpoints, signals, devices, processes, metrics and TensorBoard."""
