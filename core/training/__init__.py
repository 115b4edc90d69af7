"""Training, after the model: the engine (the one forward path), the loop and its epoch-end callbacks, calibration,
the final report, checkpoints, signals, devices, processes, metrics and TensorBoard."""
