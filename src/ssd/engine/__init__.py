"""Training, evaluation and prediction loops over the model and the data."""
