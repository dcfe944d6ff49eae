"""keraffe.keras_layers"""
