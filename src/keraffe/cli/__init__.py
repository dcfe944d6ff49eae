"""keraffe.cli"""
