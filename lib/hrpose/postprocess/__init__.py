"""Post-processing: top-down decoding, rescoring and pose NMS; bottom-up grouping and regression."""
