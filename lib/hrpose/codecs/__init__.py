"""Target encoders and their decoders, in pairs: gaussian heatmaps (standard, DARK),
associative-embedding tags, offset fields."""
