"""keraffe.layout"""
