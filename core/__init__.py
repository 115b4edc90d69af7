"""Social-xLSTM: traffic forecasting from detector networks, assembled from plugins by TOML recipes."""
