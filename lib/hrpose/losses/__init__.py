"""Training losses: joints MSE / OHKM, masked heatmap loss, associative embedding, offset loss."""
