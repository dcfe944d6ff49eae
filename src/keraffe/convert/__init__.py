"""Converters between Caffe and Keras: one registry per direction, one module per layer family."""
