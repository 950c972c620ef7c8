"""Training targets, and the decoders that turn their maps back into coordinates.

Gaussian heatmaps (standard and DARK, with their argmax, quarter-offset and Taylor decoders),
associative-embedding heatmaps and tag indices, and the regression models' centre heatmaps and
offset fields. Grouping joints into people (associative embedding, HAE's progressive decoding)
and turning offset fields into poses with pose NMS are whole test-time algorithms rather than
inverses of one target, so they live in ``postprocess``.
"""
