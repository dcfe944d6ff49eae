"""keraffe.convert"""
