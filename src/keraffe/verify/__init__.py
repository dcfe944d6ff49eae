"""keraffe.verify"""
